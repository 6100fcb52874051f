"""Export sizes and fidelity: checkpoint bytes against export-folder bytes, max abs diff per format.

    python benchmarks/export_sizes.py --preset minimal_cpu
    python benchmarks/export_sizes.py --preset fastgan_lite_256 --preset stylegan2_256 \
        --formats safetensors,onnx,torchscript --json export_sizes.json

Each preset is built, trained for ``--steps`` steps (so the checkpoint holds optimiser states, as
every real checkpoint does) and saved; then G_ema is exported in each format. Prints one JSON
line per export: checkpoint and folder bytes, their ratio, the export-time max abs difference
to PyTorch, and the export's wall-clock seconds (CPU; noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from projected_gan import ExperimentSpec, build_from_spec
from projected_gan.export import export_checkpoint


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", action="append", help="repeatable (default minimal_cpu)")
    p.add_argument("--formats", default="safetensors,torchscript,onnx")
    p.add_argument("--steps", type=int, default=1, help="training steps before the save")
    p.add_argument("--batch", type=int, default=2, help="train.batch for those steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--trunc", type=float, default=None, help="psi for StyleGAN2 (default 0.7)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", type=Path, help="also write the rows here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.preset or ["minimal_cpu"]:
            overrides = [
                f"train.device={args.device}",
                f"train.batch={args.batch}",
                f"output.dir={tmp}",
                "metrics.names=[]",
                *args.set,
            ]
            spec = ExperimentSpec.load(None, preset=preset, overrides=overrides)
            trainer = build_from_spec(spec)
            for _ in range(args.steps):
                trainer.step()
            ckpt = trainer.save()
            ckpt_bytes = ckpt.stat().st_size
            stylegan = any(n.endswith("w_avg") for n, _ in trainer.G_ema.named_buffers())
            psi = (args.trunc if args.trunc is not None else 0.7) if stylegan else 1.0
            for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
                t0 = time.perf_counter()
                result = export_checkpoint(
                    ckpt, Path(tmp) / f"{preset}-{fmt}", format=fmt, truncation_psi=psi
                )
                folder = sum(p.stat().st_size for p in result.folder.iterdir())
                row = {
                    "preset": preset,
                    "format": fmt,
                    "truncation_psi": psi,
                    "checkpoint_bytes": ckpt_bytes,
                    "folder_bytes": folder,
                    "ratio": round(folder / ckpt_bytes, 4),
                    "max_abs_diff": result.max_abs_diff,
                    "export_s": round(time.perf_counter() - t0, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            del trainer
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
