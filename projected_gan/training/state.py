"""What a run must keep to continue exactly: counters, weights, optimisers, RNG streams.

A checkpoint is one safetensors file (:mod:`projected_gan.checkpoint`); this module decides what
goes in it for a training run and how it is put back: :class:`Counters` (images seen, steps,
ticks, best metric, time), the optimiser states (with their parameters' memory layout), the RNG
states of every rank, and the pruning of old snapshots.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from projected_gan.checkpoint import (
    Checkpoint,
    CheckpointError,
    find_checkpoints,
    load_module_state,
    save_checkpoint,
    snapshot_path,
)
from projected_gan.training.step import match_state_layout

__all__ = [
    "ARCHITECTURE_FIELDS",
    "Counters",
    "TrainingStopped",
    "architecture_differences",
    "load_weights",
    "prune_checkpoints",
    "write_checkpoint",
]

# Model-defining spec fields: a checkpoint made with other values cannot be loaded.
ARCHITECTURE_FIELDS = (
    "data.resolution",
    "data.channels",
    "data.conditional",
    "generator",
    "discriminator",
)


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (too many bad steps, checkpoint not writable, ...)."""


@dataclass
class Counters:
    """Host-side progress of a run (plain ints: reading them never waits for the GPU)."""

    nimg: int = 0  # real images shown to D, all ranks together
    step: int = 0
    tick: int = 0
    best_metric: float | None = None  # lowest first metric so far, and when
    best_nimg: int | None = None
    bad_steps_total: int = 0
    elapsed: float = 0.0  # training seconds before this process (resume)

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    def note_metric(self, value: float | None) -> None:
        """Remember ``value`` (the first metric, lower is better) if it is the best so far."""
        usable = value is not None and math.isfinite(value)
        if usable and (self.best_metric is None or value < self.best_metric):
            self.best_metric, self.best_nimg = value, self.nimg

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Counters:
        """The counters of a checkpoint's metadata (absent keys: zero)."""
        return cls(
            nimg=int(meta.get("nimg", 0)),
            step=int(meta.get("step", 0)),
            tick=int(meta.get("tick", 0)),
            best_metric=meta.get("best_metric"),
            best_nimg=meta.get("best_nimg"),
            bad_steps_total=int(meta.get("bad_steps_total", 0)),
            elapsed=float(meta.get("elapsed", 0.0)),
        )


def _get(tree: dict, dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def architecture_differences(meta: Mapping[str, Any], spec: dict) -> list[str]:
    """``field: checkpoint X vs now Y`` for each model-defining spec field that differs between
    a checkpoint's ``meta`` and a trainer's spec (both as the trainer describes its parts)."""
    saved = meta.get("spec") or {}
    return [
        f"{f}: checkpoint {json.dumps(_get(saved, f))} vs now {json.dumps(_get(spec, f))}"
        for f in ARCHITECTURE_FIELDS
        if _get(saved, f) != _get(spec, f)
    ]


def load_weights(
    ckpt: Checkpoint,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
) -> None:
    """Load each named module's weights (all required) and optimiser state (when stored)."""
    for name, module in modules.items():
        if name not in ckpt.models:
            raise CheckpointError(f"{ckpt.path} has no weights for {name}")
        load_module_state(module, ckpt.models[name], f"{ckpt.path} [{name}]")
    for name, opt in optimizers.items():
        if name in ckpt.optimizers:
            opt.load_state_dict(ckpt.optimizers[name])
            match_state_layout(opt)


def write_checkpoint(
    path: Path,
    *,
    models: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    rng: Mapping[str, torch.Tensor],
    meta: dict[str, Any],
    run_dir: Path,
    before_replace: Callable[[], None] | None = None,
) -> Path:
    """Write one snapshot atomically; a failed write stops the run, keeping the older ones."""
    try:
        save_checkpoint(
            path,
            models=models,
            optimizers=optimizers,
            extra=rng,
            meta=meta,
            before_replace=before_replace,
        )
    except OSError as exc:
        raise TrainingStopped(
            f"could not write checkpoint {path} ({exc}); the previous checkpoints are kept. "
            f"Free some space and resume with `projected-gan train --resume {run_dir}`."
        ) from exc
    return path


def prune_checkpoints(folder: Path, keep: int, spare: Iterable[int | None] = ()) -> None:
    """Delete all but the newest ``keep`` snapshots, sparing those at the ``spare`` image counts
    (the best one; the newest healthy one, a rollback's target)."""
    kept = {snapshot_path(folder, n).name for n in spare if n is not None}
    for old in find_checkpoints(folder)[keep:]:
        if old.name not in kept:
            with contextlib.suppress(OSError):
                old.unlink()
