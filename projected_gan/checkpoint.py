"""Checkpoints: one safetensors file holding weights, optimiser states, RNG states and counters.

One file per snapshot means one atomic rename per save: a crash or ``kill -9`` mid-save leaves the
previous checkpoints untouched. Loading never unpickles anything (safetensors + JSON metadata).

Layout of the tensors: ``model.<module>.<param>``, ``optim.<name>.<param index>.<key>``,
``extra.<key>`` (RNG states, ...). Metadata: ``{"format": ..., "meta": <json>}``, the JSON holding
the counters, the optimisers' param groups, the resolved spec and the library version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from projected_gan.atomic import atomic_write
from projected_gan.configs import PIPELINE_ARGS
from projected_gan.errors import ReadError, quote
from projected_gan.safejson import JSONFileError, loads_bounded

__all__ = [
    "CHECKPOINT_GLOB",
    "Checkpoint",
    "CheckpointError",
    "UndescribedRunError",
    "check_described",
    "find_checkpoints",
    "generator_config",
    "latest_valid_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

FORMAT = "projected-gan-checkpoint/1"
# Seconds to pause between writing a checkpoint's temp file and renaming it into place. Only for
# tests that kill a run in the middle of a save; never set it in real runs.
WRITE_DELAY_ENV = "PROJECTED_GAN_CHECKPOINT_WRITE_DELAY"
CHECKPOINT_GLOB = "snapshot-*.safetensors"
_SNAPSHOT_RE = re.compile(r"^snapshot-(\d+)\.safetensors$")


class CheckpointError(ReadError):
    """A checkpoint file that is missing, truncated, foreign, or does not fit the model."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: tensors grouped by prefix, plus the JSON metadata."""

    path: Path
    meta: dict[str, Any]
    models: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    optimizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    sha256: str | None = None  # of the file's bytes, when loaded with digest=True


def _optimizer_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{name}.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    path: str | Path,
    *,
    models: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer] = {},
    extra: Mapping[str, torch.Tensor] = {},
    meta: Mapping[str, Any] = {},
    before_replace: Callable[[], None] | None = None,
) -> Path:
    """Write models' state dicts, optimisers, extra tensors and JSON ``meta`` to ``path``.

    The write is atomic (temp file, fsync, rename); ``before_replace`` is a test hook.
    """
    tensors: dict[str, torch.Tensor] = {}
    for name, module in models.items():
        for key, value in module.state_dict().items():
            tensors[f"model.{name}.{key}"] = value
    optim_meta = {}
    for name, opt in optimizers.items():
        t, m = _optimizer_tensors(name, opt)
        tensors.update(t)
        optim_meta[name] = m
    for key, value in extra.items():
        tensors[f"extra.{key}"] = value
    # safetensors wants contiguous CPU tensors that share no storage.
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    full_meta = {**meta, "optimizers": optim_meta}
    blob = st_save(tensors, metadata={"format": FORMAT, "meta": json.dumps(full_meta)})
    path = Path(path)
    delay = float(os.environ.get(WRITE_DELAY_ENV, 0) or 0)
    if before_replace is None and delay > 0:

        def before_replace() -> None:
            time.sleep(delay)

    with atomic_write(path, before_replace=before_replace) as f:
        f.write(blob)
    return path


def load_checkpoint(path: str | Path, *, digest: bool = False) -> Checkpoint:
    """Read and check a checkpoint; :class:`CheckpointError` with the reason if it is unusable.

    ``digest``: also record the SHA-256 of the very bytes read (``Checkpoint.sha256``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = loads_bounded(data[8 : 8 + header_len], f"{path} (header)")
        metadata = header.get("__metadata__") or {}
        if not isinstance(metadata, dict):
            raise CheckpointError(f"{path}: its __metadata__ is not an object")
    except (SafetensorError, ValueError, OSError, RuntimeError, AttributeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}"
        ) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a projected-gan checkpoint (format {quote(metadata.get('format'))}, "
            f"expected {FORMAT!r})"
        )
    try:
        meta = loads_bounded(metadata.get("meta", "{}"), f"{path} (meta)")
    except JSONFileError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its meta is {type(meta).__name__}, not an object")
    ckpt = Checkpoint(path=path, meta=meta)
    if digest:
        ckpt.sha256 = hashlib.sha256(data).hexdigest()
    optim_state: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "model":
            name, _, param = rest.partition(".")
            ckpt.models.setdefault(name, {})[param] = value
        elif kind == "optim":
            match = re.fullmatch(r"([^.]+)\.(\d{1,9})\.(.+)", rest)
            if match is None:
                raise CheckpointError(f"{path}: tensor {quote(key)} is not optim.<name>.<i>.<key>")
            optim_state.setdefault(match[1], {}).setdefault(int(match[2]), {})[match[3]] = value
        elif kind == "extra":
            ckpt.extra[rest] = value
    optimizers = meta.get("optimizers", {})
    if not isinstance(optimizers, dict):
        raise CheckpointError(f"{path}: meta 'optimizers' is not an object")
    for name, om in optimizers.items():
        scalars = om.get("scalars", {}) if isinstance(om, dict) else None
        if not isinstance(scalars, dict) or not isinstance(om.get("param_groups"), list):
            raise CheckpointError(f"{path}: optimizer {quote(name)} has no param_groups/scalars")
        state = optim_state.get(name, {})
        for k, v in scalars.items():
            idx, _, key = k.partition(".")
            if not idx.isdigit() or len(idx) > 9 or not key:
                raise CheckpointError(f"{path}: optimizer scalar {quote(k)} is not <i>.<key>")
            state.setdefault(int(idx), {})[key] = v
        ckpt.optimizers[name] = {"state": state, "param_groups": om["param_groups"]}
    return ckpt


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict`` with a message that lists missing, unexpected and mismatched keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch (checkpoint vs model)", mismatched),
        ):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{label}: {', '.join(keys[:5])}{more}")
        raise CheckpointError(f"{what} does not fit this model: " + "; ".join(parts))
    module.load_state_dict(state)


def snapshot_path(folder: Path, nimg: int) -> Path:
    """``snapshot-<kimg*1000, 9 digits>.safetensors``: names sort by training progress."""
    return folder / f"snapshot-{nimg:09d}.safetensors"


def find_checkpoints(folder: str | Path) -> list[Path]:
    """Snapshots in ``folder`` (a run dir or its ``checkpoints/``), newest first."""
    folder = Path(folder)
    if (folder / "checkpoints").is_dir():
        folder = folder / "checkpoints"
    found = [p for p in folder.glob(CHECKPOINT_GLOB) if _SNAPSHOT_RE.match(p.name)]
    return sorted(found, key=lambda p: int(_SNAPSHOT_RE.match(p.name).group(1)), reverse=True)


def latest_valid_checkpoint(folder: str | Path, *, digest: bool = False) -> Checkpoint:
    """Load the newest readable snapshot, warning about each newer one that is unusable.

    ``digest``: as for :func:`load_checkpoint`."""
    candidates = find_checkpoints(folder)
    if not candidates:
        raise CheckpointError(f"no checkpoints ({CHECKPOINT_GLOB}) found in {folder}")
    problems = []
    for path in candidates:
        try:
            ckpt = load_checkpoint(path, digest=digest)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if problems:
            warnings.warn(
                "skipped unusable checkpoint(s), resuming from "
                f"{path.name}: " + " | ".join(problems),
                stacklevel=2,
            )
        return ckpt
    raise CheckpointError("no usable checkpoint in " + str(folder) + ": " + " | ".join(problems))


def resolve_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint file, or the newest usable one in a run folder."""
    path = Path(path)
    if path.is_dir():
        return latest_valid_checkpoint(path)
    return load_checkpoint(path)


class UndescribedRunError(CheckpointError):
    """A checkpoint of a hand-built run whose spec cannot describe a part it needs (a module not
    built through a registry, data made in memory); ``field`` names the spec section."""


def check_described(ckpt: Checkpoint, sections: tuple[str, ...], fix: str) -> None:
    """Raise :class:`UndescribedRunError` when ``ckpt``'s spec cannot describe one of the spec
    ``sections`` (the trainer's parts could not say what they are); ``fix``: what to do."""
    undescribed = ckpt.meta.get("undescribed") or {}
    if not isinstance(undescribed, dict):
        raise CheckpointError(f"{ckpt.path}: its 'undescribed' record is not an object")
    missing = [s for s in sections if s in undescribed]
    if missing:
        why = "; ".join(f"{s}: {undescribed[s]}" for s in missing)
        raise UndescribedRunError(
            f"{ckpt.path} comes from a hand-built Trainer whose spec cannot describe its "
            f"{', '.join(missing)} ({why}), so they cannot be rebuilt from the checkpoint. {fix}",
            field=missing[0],
        )


def generator_config(ckpt: Checkpoint) -> dict[str, Any]:
    """The generator's part config: the spec's ``generator`` section (every argument, as the
    trainer records it) plus what the pipeline wired in (resolution, classes)."""
    check_described(
        ckpt,
        ("generator",),
        "Build the same module and load its weights with "
        "projected_gan.checkpoint.load_module_state.",
    )
    spec = ckpt.meta.get("spec") or {}
    if not isinstance(spec, dict):
        raise CheckpointError(f"{ckpt.path}: its recorded spec is not an object")
    generator = spec.get("generator")
    if not isinstance(generator, dict) or "name" not in generator:
        raise CheckpointError(f"{ckpt.path} records no spec with a generator section")
    data, num_classes = spec.get("data") or {}, ckpt.meta.get("num_classes", 0)
    if not isinstance(data, dict) or type(num_classes) is not int:
        raise CheckpointError(f"{ckpt.path}: its spec's data or its num_classes is malformed")
    # the ranges of these and of every other argument are checked before building (fitting)
    channels = data.get("channels", 3)
    known = {
        "img_resolution": data.get("resolution", 64),
        "img_channels": None if channels == 3 else channels,  # as build_generator wires it
        "c_dim": num_classes,
    }
    filled = {a: known[a] for a in PIPELINE_ARGS["generators"] if known[a] is not None}
    kwargs = {k: v for k, v in generator.items() if k != "name"}
    return {"kind": "generators", "name": generator["name"], "kwargs": {**kwargs, **filled}}
