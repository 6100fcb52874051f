"""The run folder: ``<output.dir>/<NNNNN>-<name>/`` with spec.yaml, samples/, checkpoints/, plots/.

Only rank 0 writes here. Sample grids are best effort (a full disk warns and training goes on);
checkpoints are not (see :mod:`projected_gan.training.state`).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from projected_gan.atomic import atomic_write_json
from projected_gan.configs import part_config
from projected_gan.images import save_image_grid
from projected_gan.training.spec import ExperimentSpec

__all__ = [
    "INIT_RECORD",
    "SUBFOLDERS",
    "default_run_name",
    "grid_latents",
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


def default_run_name(
    spec: ExperimentSpec, G: torch.nn.Module | None = None, data: dict | None = None
) -> str:
    """``<generator>-<data>-<resolution>-b<batch>``, safe as a folder name.

    From the spec, or for a hand-built run from its generator ``G`` and data record.
    """
    if G is None:
        data_name = Path(spec.data.path).stem if spec.data.path else "flowers64"
        generator, resolution = spec.generator.name, spec.data.resolution
    else:
        data_name = Path(data["path"]).stem if data else "memory"
        generator = (part_config(G) or {}).get("name", type(G).__name__)
        resolution = getattr(G, "img_resolution", "")
    name = f"{generator}-{data_name}-{resolution}-b{spec.train.batch}"
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


def grid_latents(
    G: torch.nn.Module, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed latents ``(n, z_dim)`` (and labels, cycling through the classes) of the grids.

    64 images up to 64 px, 32 up to 256 px, else 16; drawn from ``seed`` on the CPU, so every
    device shows the same faces.
    """
    res = getattr(G, "img_resolution", 64)
    n = 64 if res <= 64 else 32 if res <= 256 else 16
    gen = torch.Generator().manual_seed(seed + 12345)
    z = torch.randn(n, G.z_dim, generator=gen).to(device)
    c_dim = getattr(G, "c_dim", 0)
    c = (torch.arange(n) % c_dim).to(device) if c_dim else None
    return z, c
