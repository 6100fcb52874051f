"""Quality per unit of time: train a preset and print FD against kimg and training seconds.

    python benchmarks/quality_curve.py --preset minimal_cpu --kimg 5 --every 1
    python benchmarks/quality_curve.py --preset fastgan_lite_256 --data ./images --kimg 200 \
        --every 20 --json curve.json

The run is a normal training run (its folder lands in ``--out``, default a temporary folder);
metrics are computed on G_ema every ``--every`` kimg with ``metrics.num_images`` images (set it
with ``--set metrics.num_images=N``). "train_s" excludes the time spent evaluating, so curves
from different versions or machines compare quality against training time.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from projected_gan import ExperimentSpec, build_from_spec
from projected_gan.atomic import atomic_write_json
from projected_gan.loggers import read_jsonl


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="minimal_cpu")
    p.add_argument("--data", help="image folder or zip (default: the preset's data)")
    p.add_argument("--kimg", type=float, required=True, help="train this many thousand images")
    p.add_argument("--every", type=float, required=True, help="evaluate every E kimg")
    p.add_argument("--metrics", default="fd", help="comma list (default fd)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, help="runs folder (default: a temporary one)")
    p.add_argument("--json", type=Path, help="also write the curve here")
    return p.parse_args(argv)


def curve(metrics_file: Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl`` with training seconds (evaluation time taken out)."""
    rows, eval_total = [], 0.0
    for record in read_jsonl(metrics_file):
        # "seconds" is taken after the evaluation, so it includes this one too.
        eval_total += record.get("eval_seconds", 0.0)
        rows.append({**record, "train_s": round(record["seconds"] - eval_total, 2)})
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        overrides = [
            f"train.kimg={args.kimg}",
            f"train.metrics_every={args.every}",
            f"metrics.names={json.dumps(names)}",
            "metrics.at_start=true",  # a curve starts from the untrained baseline
            f"output.dir={out}",
            *args.set,
        ]
        spec = ExperimentSpec.load(
            preset=args.preset,
            overrides=[*overrides, *([("data.path", args.data)] if args.data else [])],
        )
        run_dir = build_from_spec(spec).fit(progress=False)
        rows = curve(run_dir / "metrics.jsonl")
    header = ["kimg", "train_s", *names]
    print(f"quality curve: {args.preset}, {spec.data.resolution}px, batch {spec.train.batch}")
    print("  ".join(f"{h:>10}" for h in header))
    for row in rows:
        print("  ".join(f"{row.get(h, float('nan')):>10.3f}" for h in header))
    if args.json is not None:
        record = {
            "preset": args.preset,
            "spec": spec.to_dict(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(spec.train.device),
            "curve": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, record)
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
    sys.exit(0)
