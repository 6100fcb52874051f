"""The run folder: ``<output.dir>/<NNNNN>-<name>/`` with spec.yaml, samples/, checkpoints/, plots/.

Only rank 0 writes here. Sample grids are best effort (a full disk warns and training goes on);
checkpoints are not (see :mod:`projected_gan.training.state`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from projected_gan.atomic import atomic_write_json
from projected_gan.images import save_image_grid
from projected_gan.spec import ExperimentSpec

__all__ = [
    "INIT_RECORD",
    "SUBFOLDERS",
    "default_run_name",
    "new_run_dir",
    "prepare_run_dir",
    "write_grid",
]

SUBFOLDERS = ("samples", "checkpoints", "plots")
INIT_RECORD = "init.json"  # where a run's starting weights came from (train.init)


def new_run_dir(root: str | Path, name: str) -> Path:
    """``<root>/<NNNNN>-<name>``, numbered one past the highest existing run."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    run = root / f"{max(numbers, default=-1) + 1:05d}-{name}"
    run.mkdir()
    return run


def default_run_name(spec: ExperimentSpec, undescribed: Mapping[str, str] | None = None) -> str:
    """``<generator>-<data>-<size>-b<batch>`` (size ``64``, ``64x96``, ``64c1`` for one channel),
    safe as a folder name (``custom`` and ``memory`` for a hand-built run's generator and data
    that its spec cannot describe)."""
    undescribed = undescribed or {}
    generator = "custom" if "generator" in undescribed else spec.generator.name
    data_name = Path(spec.data.path).stem if spec.data.path else "flowers64"
    if "data" in undescribed:
        data_name = "memory"
    h, w = spec.data.size
    size = f"{h}" if h == w else f"{h}x{w}"
    if spec.data.channels != 3:
        size += f"c{spec.data.channels}"
    name = f"{generator}-{data_name}-{size}-b{spec.train.batch}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def prepare_run_dir(
    run_dir: Path | None,
    spec: ExperimentSpec,
    name: str | None = None,
    init: dict[str, Any] | None = None,
) -> Path:
    """The run folder (made under ``spec.output.dir`` if None) with its sub-folders and spec,
    and ``init.json`` when the run started from trained weights (``init``, its record)."""
    if run_dir is None:
        run_dir = new_run_dir(spec.output.dir, spec.output.name or name or default_run_name(spec))
    for sub in SUBFOLDERS:
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    spec_file = run_dir / "spec.yaml"
    if not spec_file.exists():
        spec.save(spec_file)
    if init is not None and not (run_dir / INIT_RECORD).exists():
        atomic_write_json(run_dir / INIT_RECORD, init)
    return run_dir


def write_grid(images: torch.Tensor, path: Path) -> Path | None:
    """Write an image grid (uint8, or float in [-1, 1]); warn and return None if it fails."""
    try:
        save_image_grid(images, path)
    except OSError as exc:
        warnings.warn(
            f"could not write sample grid {path} ({exc}); training continues", stacklevel=3
        )
        return None
    return path
