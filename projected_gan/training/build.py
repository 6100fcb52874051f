"""``build_from_spec``: a ready :class:`Trainer` from an :class:`ExperimentSpec`.

The parts themselves are made in :mod:`projected_gan.training.assemble`; their builders are
re-exported here, where they used to live.
"""

from __future__ import annotations

from pathlib import Path

import torch

from projected_gan.training.assemble import (
    build_discriminator,
    build_generator,
    configure_torch,
    load_dataset,
    resolve_device,
)
from projected_gan.training.spec import ExperimentSpec
from projected_gan.training.trainer import Trainer

__all__ = [
    "build_discriminator",
    "build_from_spec",
    "build_generator",
    "configure_torch",
    "load_dataset",
    "resolve_device",
]


def build_from_spec(
    spec: ExperimentSpec,
    *,
    run_dir: str | Path | None = None,
    device: str | torch.device | None = None,
) -> Trainer:
    """Assemble data, G, D (projector + heads + augmentation), loss, optimisers and EMA.

    Args:
        spec: a validated spec (``ExperimentSpec.load(...)``).
        run_dir: write into this folder (used by resume); default: a new numbered folder in
            ``spec.output.dir``, made on the first write.
        device: override ``spec.train.device``.
    """
    return Trainer.from_spec(spec, run_dir=run_dir, device=device)
