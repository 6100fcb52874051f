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
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from projected_gan import distributed
from projected_gan.checkpoint import (
    Checkpoint,
    CheckpointError,
    find_checkpoints,
    latest_valid_checkpoint,
    load_module_state,
    save_checkpoint,
    snapshot_path,
)
from projected_gan.training.assemble import assemble, reassemble
from projected_gan.training.spec import ExperimentSpec
from projected_gan.training.step import match_state_layout

__all__ = [
    "ARCHITECTURE_FIELDS",
    "Counters",
    "TrainingStopped",
    "architecture_differences",
    "gather_rng_states",
    "load_weights",
    "prune_checkpoints",
    "restore_rng_states",
    "resume_run",
    "write_checkpoint",
]

# Model-defining spec fields: a checkpoint made with other values cannot be loaded.
ARCHITECTURE_FIELDS = ("data.resolution", "data.conditional", "generator", "discriminator")


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


def architecture_differences(
    meta: Mapping[str, Any], spec: dict, parts: Mapping[str, dict | None]
) -> list[str]:
    """``field: checkpoint X vs now Y`` for each model-defining spec field, and each part
    config of G and D, that differs between a checkpoint's ``meta`` and a trainer."""
    saved_spec, saved_parts = meta.get("spec") or {}, meta.get("parts") or {}
    diffs = [
        f"{f}: checkpoint {json.dumps(_get(saved_spec, f))} vs now {json.dumps(_get(spec, f))}"
        for f in ARCHITECTURE_FIELDS
        if _get(saved_spec, f) != _get(spec, f)
    ]
    for name in ("G", "D"):
        saved, mine = saved_parts.get(name), parts.get(name)
        if saved and mine and saved != mine:
            diffs.append(f"{name}: checkpoint {json.dumps(saved)} vs now {json.dumps(mine)}")
    return diffs


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


def gather_rng_states(
    latents: torch.Generator, device: torch.device, dist: distributed.DistInfo
) -> dict[str, torch.Tensor]:
    """RNG states: the shared latents' and every rank's own (``rng.torch.<rank>``, 0: none).

    Collective when distributed: every rank sends its states to rank 0.
    """
    own = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        own["cuda"] = torch.cuda.get_rng_state(device)
    rng = {"rng.latents": latents.get_state()}
    gathered = distributed.all_gather_objects(own) if dist.enabled else [own]
    for rank, states in enumerate(gathered):
        for key, state in states.items():
            rng[f"rng.{key}" + (f".{rank}" if rank else "")] = state
    return rng


def restore_rng_states(
    extra: Mapping[str, torch.Tensor],
    latents: torch.Generator,
    device: torch.device,
    dist: distributed.DistInfo,
    *,
    saved_world_size: int,
    seed: int,
    step: int,
) -> None:
    """Put the RNG streams back; with another number of processes, reseed per rank instead."""
    rank = dist.rank
    if "rng.latents" in extra:
        latents.set_state(extra["rng.latents"])
    suffix = f".{rank}" if rank else ""
    if saved_world_size == dist.world_size and f"rng.torch{suffix}" in extra:
        torch.set_rng_state(extra[f"rng.torch{suffix}"])
        if device.type == "cuda" and f"rng.cuda{suffix}" in extra:
            torch.cuda.set_rng_state(extra[f"rng.cuda{suffix}"], device)
    else:  # another number of processes: fresh, distinct streams per rank (augmentation)
        w = dist.world_size
        torch.manual_seed((seed * w + rank) * 1_000_003 + step)


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


def prune_checkpoints(folder: Path, keep: int, best_nimg: int | None) -> None:
    """Delete all but the newest ``keep`` snapshots, always sparing the best one."""
    best = snapshot_path(folder, best_nimg).name if best_nimg is not None else None
    for old in find_checkpoints(folder)[keep:]:
        if old.name != best:
            with contextlib.suppress(OSError):
                old.unlink()


def resume_run(
    make: Callable[..., Any],
    run_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    device: str | torch.device | None = None,
) -> Any:
    """Rebuild the run in ``run_dir`` and load its newest usable checkpoint.

    A spec-built run is assembled from ``spec.yaml`` (+ ``overrides``); a hand-built one from
    the part configs and data recorded in its checkpoint. ``make(assembly, spec, run_dir,
    built_from_spec=...)`` makes the trainer (``Trainer.from_assembly``).
    """
    run_dir = Path(run_dir)
    spec_file = run_dir / "spec.yaml"
    if not spec_file.is_file():
        raise CheckpointError(f"{run_dir} is not a run folder: it has no spec.yaml")
    spec = ExperimentSpec.load(spec_file, overrides=overrides)
    ckpt = latest_valid_checkpoint(run_dir)
    from_spec = ckpt.meta.get("built_from_spec", True)  # older checkpoints: all spec-built
    parts = assemble(spec, device) if from_spec else reassemble(ckpt, spec, device)
    trainer = make(parts, spec, run_dir, built_from_spec=from_spec)
    trainer.load_state(ckpt)
    if overrides and trainer.is_main:
        spec.save(spec_file)
    return trainer
