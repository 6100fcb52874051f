"""Time per training step of the GAN variants (losses, R1/R2, SAN, diffusion) against hinge.

    python benchmarks/variant_cost.py --preset minimal_cpu --device cpu --iters 6 --warmup 2 \
        --set train.precision=fp32 --json benchmarks/results/variant_cost_cpu.json

Every variant is the preset plus a few overrides (``VARIANTS``), built with random data and
timed with ``train_throughput.measure`` (warm-up steps, then ``--iters`` timed steps; on a CPU
each step is timed and the median is reported). The baseline (the preset's hinge + DiffAugment)
runs first and again last: the two medians bound the drift of the machine over the run, and
every ratio is against their mean. A penalty's cost depends on its interval: ``every step``
(R3GAN's setting) is the worst case, ``/16`` StyleGAN2's lazy regularisation, where the step
that computes it costs the ``every step`` price and the others none.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput  # a sibling script, not a package

from projected_gan.atomic import atomic_write_json

R1R2 = ("loss.r1_gamma=1", "loss.r2_gamma=1")
VARIANTS: dict[str, tuple[str, ...]] = {
    "hinge (baseline)": (),
    "nonsaturating": ("loss.name=nonsaturating",),
    "rpgan": ("loss.name=rpgan",),
    "hinge + R1 every step": ("loss.r1_gamma=1", "loss.penalty_interval=1"),
    "hinge + R2 every step": ("loss.r2_gamma=1", "loss.penalty_interval=1"),
    "rpgan + R1 + R2 every step": ("loss.name=rpgan", *R1R2, "loss.penalty_interval=1"),
    "rpgan + R1 + R2 / 16": ("loss.name=rpgan", *R1R2, "loss.penalty_interval=16"),
    "SAN heads": ("discriminator.discriminator={name: multiscale, san: true}",),
    "diffusion noise": (
        "discriminator.augment={name: diffusion, p: 1.0}",  # p = 1: the noise at its widest
    ),
    "hinge (baseline, again)": (),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="minimal_cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, help="train.batch (default: the preset's)")
    p.add_argument("--resolution", type=int, help="data.resolution (default: the preset's)")
    p.add_argument("--iters", type=int, default=6, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--variants", type=lambda s: s.split(";"), help="';'-separated names")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants or [] if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; known: {'; '.join(VARIANTS)}")
    if args.iters < 1 or args.warmup < 1:
        p.error("--iters and --warmup must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    names = args.variants or list(VARIANTS)
    results: dict[str, Any] = {}
    for name in names:
        spec = train_throughput.make_spec(args, VARIANTS[name])
        trainer = train_throughput.build_trainer(spec, random_data=True)
        r = train_throughput.measure(trainer, args.iters, args.warmup)
        step_s = r.get("step_s_median", r["step_s"])
        results[name] = {"overrides": list(VARIANTS[name]), "step_s": step_s, **r}
        print(f"{name:<28} {step_s * 1000:8.1f} ms/step", flush=True)
        del trainer
        gc.collect()
    base = [results[n]["step_s"] for n in results if n.startswith("hinge (baseline")]
    ref = statistics.fmean(base) if base else None
    print()
    print("| variant | ms / step | x hinge |")
    print("| --- | ---: | ---: |")
    for name, r in results.items():
        ratio = "-" if ref is None else f"{r['step_s'] / ref:.2f}"
        r["ratio"] = None if ref is None else r["step_s"] / ref
        print(f"| {name} | {r['step_s'] * 1000:.0f} | {ratio} |")
    if len(base) == 2:
        print(f"\nbaseline drift over the run: {abs(base[1] - base[0]) / ref * 100:.1f} %")
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, out)
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
