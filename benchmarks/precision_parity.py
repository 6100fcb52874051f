"""Does a precision mode change what training learns? FD curves per mode over several seeds.

    python benchmarks/precision_parity.py --kimg 1 --every 0.5 --json parity.json
    python benchmarks/precision_parity.py --init-only --seeds 0,1,2,3,4
    python benchmarks/precision_parity.py --preset fastgan_lite_256 --data ./images \
        --modes fp32,tf32,bf16,bf16_fp32_features --kimg 200 --every 20 --json parity.json

Two measurements, both on the same seeds in every mode (same initial weights, projection,
data order, latents and augmentation draws):

1. At initialisation (``--init-only``, also run before training unless ``--skip-init``): one
   G step and one D step of each mode against fp32, from identical copies of the networks.
   Prints the relative change ``|x - x_fp32| / |x_fp32|`` of the logits (fakes and reals), of
   the gradient reaching G's output image and of G's and D's parameter gradients, with the
   cosine against fp32 for the gradients.
2. Training: each mode trains ``--kimg`` from each seed; FD of G_ema (always generated in fp32)
   every ``--every`` kimg (kimg 0 once per seed: every mode starts from the same G_ema). Prints
   the curves side by side and, per mode, the final FD's mean, the spread over seeds and the
   mean per-seed difference to fp32.

Default set-up: a CPU-sized variant of the ``minimal_cpu`` preset (32 px, FastGAN-lite ngf 16,
lite0 projector fed 64 px, batch 8, FD of 250 images). ``tf32`` is added on CUDA (it is fp32
elsewhere). ``--json`` writes everything (rewritten after every run, so a long job can be read
while it is running).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from projected_gan import ExperimentSpec, build_from_spec
from projected_gan.atomic import atomic_write_bytes
from projected_gan.precision import PRECISIONS, resolve_precision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_curve import curve  # a sibling script

# The CPU-sized default on top of the minimal_cpu preset (which trains 64 px, batch 16).
SMALL = (
    "data.resolution=32",
    "generator.ngf=16",
    "discriminator.feature_network.input_size=64",
    "train.batch=8",
    "train.tick=0.5",
    "train.sample_every=1000",
    "train.snapshot_every=1000",
    "metrics.num_images=250",
)
INIT_KEYS = ("fakes", "logits_fake", "logits_real", "grad_image", "grad_G", "grad_D")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="minimal_cpu")
    p.add_argument("--data", help="image folder or zip (default: the preset's data)")
    p.add_argument(
        "--modes", help="comma list (default fp32,bf16,bf16_fp32_features; +tf32 on CUDA)"
    )
    p.add_argument("--seeds", default="0,1,2", help="comma list of train.seed values")
    p.add_argument("--kimg", type=float, default=1.0, help="train this many thousand images")
    p.add_argument("--every", type=float, default=0.5, help="evaluate FD every E kimg")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-small", action="store_true", help="use the preset as is (no CPU sizes)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--init-only", action="store_true", help="only the initialisation comparison")
    p.add_argument("--skip-init", action="store_true", help="no initialisation comparison")
    p.add_argument(
        "--eval-start-per-mode",
        action="store_true",
        help="evaluate kimg 0 in every mode (default: once per seed, the same G_ema)",
    )
    p.add_argument("--out", type=Path, help="runs folder (default: a temporary one)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    if args.init_only and args.skip_init:
        p.error("--init-only and --skip-init exclude each other")
    return args


def spec_for(args: argparse.Namespace, out: Path, seed: int, mode: str) -> ExperimentSpec:
    overrides = [
        *(() if args.no_small else SMALL),
        f"train.kimg={args.kimg}",
        f"train.metrics_every={args.every}",
        "metrics.at_start=true",  # curves start from the untrained baseline
        f"train.seed={seed}",
        f"train.precision={mode}",
        f"train.device={args.device}",
        f"output.dir={out}",
        f"output.name=seed{seed}-{mode}",
        *args.set,
    ]
    return ExperimentSpec.load(
        preset=args.preset,
        overrides=[*overrides, *([("data.path", args.data)] if args.data else [])],
    )


# ------------------------------------------------------------------------ at initialisation
def _flat(tensors: list[torch.Tensor | None]) -> torch.Tensor:
    return torch.cat([t.detach().float().flatten() for t in tensors if t is not None])


# Rows of the initialisation table that are not modes: where the differences come from, and
# the yardstick of a fp32 step with other augmentation draws (the noise every step has anyway).
DIAGNOSTICS = {
    "diag: bf16 G, fp32 D": ("bf16", "fp32", 0),
    "diag: fp32 G, bf16_fp32_features D": ("fp32", "bf16_fp32_features", 0),
    "diag: fp32 G, bf16 D": ("fp32", "bf16", 0),
    "yardstick: fp32, other augmentation draws": ("fp32", "fp32", 1000),
}


def one_step(
    trainer: Any,
    g_mode: str,
    d_mode: str,
    z: torch.Tensor,
    reals: torch.Tensor,
    seed: int,
) -> dict[str, torch.Tensor]:
    """Logits and gradients of one G step and one D step on copies of the networks.

    G runs in ``g_mode`` and D in ``d_mode`` (the trainer uses one mode for both); ``seed``
    fixes the augmentation draws.
    """
    g_prec = resolve_precision(g_mode, trainer.device)
    d_prec = resolve_precision(d_mode, trainer.device)
    G, D = copy.deepcopy(trainer.G), copy.deepcopy(trainer.D)
    d_prec.configure(D)
    loss, dev = trainer.loss, trainer.device.type

    def disc(x: torch.Tensor) -> torch.Tensor:
        with d_prec.autocast_context(dev):
            return D(x if d_prec.autocast else x.float(), None)

    out: dict[str, torch.Tensor] = {}
    torch.manual_seed(seed)
    D.requires_grad_(False)
    with g_prec.autocast_context(dev):
        fakes = G(z, None)
    fakes.retain_grad()
    out["fakes"] = fakes.detach().float()
    logits = disc(fakes)
    loss.g_loss(logits)[0].backward()
    out["logits_fake"] = logits.detach().float()
    out["grad_image"] = fakes.grad.float()
    out["grad_G"] = _flat([p.grad for p in G.parameters()])
    D.requires_grad_(True)
    real_logits, fake_logits = disc(reals), disc(fakes.detach())
    total = loss.d_loss_real(real_logits)[0] + loss.d_loss_fake(fake_logits)[0]
    total.backward()
    out["logits_real"] = real_logits.detach().float()
    out["grad_D"] = _flat([p.grad for p in D.trainable_parameters()])
    return out


def compare(ref: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> dict[str, float]:
    row = {}
    for key in INIT_KEYS:
        a, b = got[key].flatten().double(), ref[key].flatten().double()
        row[f"{key}_rel"] = float((a - b).norm() / b.norm().clamp_min(1e-30))
        if key.startswith("grad"):
            row[f"{key}_cos"] = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    return row


def measure_init(args: argparse.Namespace, modes: list[str], seeds: list[int], out: Path) -> dict:
    rows = {m: (m, m, 0) for m in modes if m != "fp32"} | DIAGNOSTICS
    results: dict[str, list[dict[str, float]]] = {name: [] for name in rows}
    for seed in seeds:
        trainer = build_from_spec(spec_for(args, out / "init", seed, "fp32"))
        reals_u8, _ = next(trainer.batches)
        reals = reals_u8.float() / 127.5 - 1
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(trainer.batch, trainer.G.z_dim, generator=gen).to(trainer.device)
        ref = one_step(trainer, "fp32", "fp32", z, reals, seed)
        again = compare(ref, one_step(trainer, "fp32", "fp32", z, reals, seed))
        if max(v for k, v in again.items() if k.endswith("_rel")) > 1e-5:
            print(f"warning: fp32 is not repeatable here (seed {seed}): {again}")
        for name, (g_mode, d_mode, offset) in rows.items():
            got = one_step(trainer, g_mode, d_mode, z, reals, seed + offset)
            results[name].append({"seed": seed, **compare(ref, got)})
        del trainer
        gc.collect()
    print(f"\nat initialisation, against fp32: mean +- half the range over seeds {seeds}")
    print("(rel = |x - x_fp32| / |x_fp32|; image = the gradient reaching G's output images)")
    keys = [k for k in results[next(iter(results))][0] if k != "seed"]
    labels = [k.replace("logits_", "logit ").replace("grad_", "").replace("_", " ") for k in keys]
    print(f"{'':>42}" + "".join(f"{label:>15}" for label in labels))
    for name, per_seed in results.items():
        cells = []
        for key in keys:
            vals = [r[key] for r in per_seed]
            cells.append(f"{statistics.mean(vals):.3f}+-{(max(vals) - min(vals)) / 2:.3f}")
        print(f"{name:>42}" + "".join(f"{c:>15}" for c in cells))
    return results


# ------------------------------------------------------------------------------- training
def metric_names(trainer: Any) -> list[str]:
    return list(trainer.spec.metrics.names)


def reuse_start_metrics(trainer: Any, start: dict[str, float]) -> None:
    """Report ``start`` for the evaluation at kimg 0 instead of computing it again.

    Every mode starts from the same G_ema for a seed (same weights; G_ema is generated in fp32
    for metrics), so its kimg-0 numbers are the first mode's (``--eval-start-per-mode`` checks).
    """
    evaluate = trainer.evaluate

    def run(G_ema: torch.nn.Module) -> dict[str, float]:
        return dict(start) if trainer.nimg == 0 else evaluate(G_ema)

    trainer.evaluate = run


def summarise(runs: dict[str, dict[int, list[dict]]], metric: str = "fd") -> dict[str, Any]:
    """Final FD per mode: mean, spread (sample sd, min, max) and the per-seed gap to fp32."""
    summary: dict[str, Any] = {}
    base = {s: rows[-1][metric] for s, rows in runs.get("fp32", {}).items() if rows}
    for mode, by_seed in runs.items():
        final = {s: rows[-1][metric] for s, rows in by_seed.items() if rows}
        if not final:
            continue
        vals = list(final.values())
        entry = {
            "final": final,
            "mean": statistics.mean(vals),
            "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals),
            "max": max(vals),
        }
        gaps = [final[s] - base[s] for s in final if s in base]
        if gaps and mode != "fp32":
            entry["gap_to_fp32_mean"] = statistics.mean(gaps)
            entry["gap_to_fp32_sd"] = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
        summary[mode] = entry
    return summary


def print_curves(runs: dict[str, dict[int, list[dict]]], metric: str = "fd") -> None:
    modes = list(runs)
    seeds = sorted({s for by_seed in runs.values() for s in by_seed})
    for seed in seeds:
        print(f"\nseed {seed}: {metric} of G_ema")
        print(f"{'kimg':>8}" + "".join(f"{m:>20}" for m in modes))
        rows = {m: runs[m].get(seed, []) for m in modes}
        for i in range(max(len(r) for r in rows.values())):
            kimg = next(r[i]["kimg"] for r in rows.values() if len(r) > i)
            cells = [f"{r[i][metric]:>20.2f}" if len(r) > i else f"{'':>20}" for r in rows.values()]
            print(f"{kimg:>8.2f}" + "".join(cells))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = build_device = args.device
    if device == "auto":
        build_device = "cuda" if torch.cuda.is_available() else "cpu"
    default = ["fp32", "bf16", "bf16_fp32_features"]
    if torch.device(build_device).type == "cuda":
        default.insert(1, "tf32")
    modes = [m.strip() for m in args.modes.split(",")] if args.modes else default
    bad = [m for m in modes if m not in PRECISIONS or m == "auto"]
    if bad or "fp32" not in modes:
        sys.exit(f"--modes: need fp32 plus any of {PRECISIONS[1:]}, got {modes}")
    seeds = [int(s) for s in args.seeds.split(",")]
    record: dict[str, Any] = {
        "preset": args.preset,
        "overrides": [*(() if args.no_small else SMALL), *args.set],
        "modes": modes,
        "seeds": seeds,
        "kimg": args.kimg,
        "every": args.every,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": build_device,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }

    def save() -> None:
        if args.json is not None:
            atomic_write_bytes(args.json, (json.dumps(record, indent=2) + "\n").encode())

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        if not args.skip_init:
            record["init"] = measure_init(args, modes, seeds, out)
            save()
        if not args.init_only:
            runs: dict[str, dict[int, list[dict]]] = {m: {} for m in modes}
            seconds: dict[str, dict[int, float]] = {m: {} for m in modes}
            record["curves"], record["train_seconds"] = runs, seconds
            for seed in seeds:
                first: dict[str, float] | None = None  # the seed's FD at kimg 0
                for mode in modes:
                    t0 = time.perf_counter()
                    trainer = build_from_spec(spec_for(args, out, seed, mode))
                    if first is not None and not args.eval_start_per_mode:
                        reuse_start_metrics(trainer, first)
                    run_dir = trainer.fit(progress=False)
                    runs[mode][seed] = curve(run_dir / "metrics.jsonl")
                    first = {k: runs[mode][seed][0][k] for k in metric_names(trainer)}
                    seconds[mode][seed] = round(time.perf_counter() - t0, 1)
                    print(
                        f"seed {seed} {mode}: final fd {runs[mode][seed][-1]['fd']:.2f} "
                        f"({seconds[mode][seed]} s)",
                        flush=True,
                    )
                    del trainer
                    record["summary"] = summarise(runs)
                    save()
                    gc.collect()
            print_curves(runs)
            print("\nfinal fd per mode: mean (sd) [min, max]; gap to fp32 on the same seed")
            for mode, s in record["summary"].items():
                gap = ""
                if "gap_to_fp32_mean" in s:
                    gap = f"   gap {s['gap_to_fp32_mean']:+.2f} (sd {s['gap_to_fp32_sd']:.2f})"
                spread = f"{s['mean']:.2f} ({s['sd']:.2f}) [{s['min']:.2f}, {s['max']:.2f}]"
                print(f"  {mode:>20}: {spread}{gap}")
    save()
    if args.json is not None:
        print(f"wrote {args.json}")
    return record


if __name__ == "__main__":
    main()
    sys.exit(0)
