"""FD at equal kimg for several discriminator feature-network setups, over several seeds.

    python benchmarks/compare_feature_networks.py --kimg 2 --every 1 --seeds 0 1 2 \
        --set data.resolution=32 --set generator.ngf=16 --json compare.json

Each setup is ``LABEL=VALUE``, VALUE being what ``discriminator.feature_network`` is set to
(a YAML name, dict or list); the default compares ``tf_efficientnet_lite0`` alone with
``[tf_efficientnet_lite0, tf_efficientnet_lite1]``. Every (setup, seed) pair is one normal
training run of the preset through ``quality_curve.py``; ``train.seed`` is the seed. The table
gives, per setup and kimg, the mean and sample standard deviation of the metric over seeds, each
seed's value, and the mean training seconds (evaluation excluded).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_curve  # a sibling script, not a package

DEFAULT_SETUPS = (
    "lite0=tf_efficientnet_lite0",
    "lite0+lite1=[tf_efficientnet_lite0, tf_efficientnet_lite1]",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="minimal_cpu")
    p.add_argument("--setup", action="append", metavar="LABEL=VALUE", help="repeatable")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--kimg", type=float, required=True)
    p.add_argument("--every", type=float, required=True)
    p.add_argument("--metric", default="fd")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", type=Path, help="also write every curve and the summary here")
    args = p.parse_args(argv)
    args.setup = args.setup or list(DEFAULT_SETUPS)
    for item in args.setup:
        if "=" not in item:
            p.error(f"--setup expects LABEL=VALUE, got {item!r}")
    return args


def summarise(curves: dict[str, dict[int, list[dict[str, Any]]]], metric: str) -> list[dict]:
    """One row per (setup, kimg): mean, sample std and per-seed values of ``metric``."""
    rows = []
    for label, by_seed in curves.items():
        kimgs = sorted({r["kimg"] for rows_ in by_seed.values() for r in rows_})
        for kimg in kimgs:
            values = {s: r[metric] for s, rs in by_seed.items() for r in rs if r["kimg"] == kimg}
            secs = [r["train_s"] for rs in by_seed.values() for r in rs if r["kimg"] == kimg]
            vals = list(values.values())
            rows.append(
                {
                    "setup": label,
                    "kimg": kimg,
                    "mean": statistics.fmean(vals),
                    "std": statistics.stdev(vals) if len(vals) > 1 else float("nan"),
                    "per_seed": values,
                    "train_s": statistics.fmean(secs),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    curves: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for item in args.setup:
        label, _, value = item.partition("=")
        curves[label] = {}
        for seed in args.seeds:
            print(f"== {label}, seed {seed}", flush=True)
            run_args = ["--preset", args.preset, "--kimg", str(args.kimg)]
            run_args += ["--every", str(args.every), "--metrics", args.metric]
            sets = [*args.set, f"train.seed={seed}", f"discriminator.feature_network={value}"]
            run_args += [a for s in sets for a in ("--set", s)]
            curves[label][seed] = quality_curve.main(run_args)
    summary = summarise(curves, args.metric)
    print(f"\n{args.metric} over seeds {args.seeds} (mean +- sample std; per seed)")
    for row in summary:
        seeds = ", ".join(f"{v:.2f}" for v in row["per_seed"].values())
        print(
            f"{row['setup']:>14}  kimg {row['kimg']:>6.3f}  {row['mean']:8.3f} +- "
            f"{row['std']:6.3f}  [{seeds}]  train_s {row['train_s']:.0f}"
        )
    if args.json is not None:
        from projected_gan.atomic import atomic_write_text

        record = {"args": vars(args) | {"json": str(args.json)}, "curves": curves}
        atomic_write_text(args.json, json.dumps(record | {"summary": summary}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return summary


if __name__ == "__main__":
    main()
