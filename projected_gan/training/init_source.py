"""The SOURCE of ``train.init``: trained weights a new run starts from, read before any work.

Four kinds, told apart by what is at the path (:func:`projected_gan.sources.identify`, as for
every command):

* a **run folder** (``checkpoints/snapshot-*.safetensors``): its newest usable checkpoint, or
  with ``checkpoint="best"`` the one with the best first metric (the run keeps it);
* a **checkpoint file** (``snapshot-*.safetensors``);
* an **export folder** (``projected-gan export``: ``config.json`` + ``model.safetensors``):
  G_ema alone, which seeds both G and G_ema; D starts from scratch;
* an **official network pickle** (``*.pkl``, ``*.pickle``), read by ``projected_gan.official``
  (a restricted unpickler: no code in the file runs).

Each gives an :class:`InitSource`: state dicts ``"G"``, ``"G_ema"`` and (when there is one)
``"D"`` under this library's names, the SHA-256 of the file actually read, and what is known
about the networks (G's part config; the feature network(s) D's heads were trained on).
Anything else, or a damaged file, is an :class:`InitError` (exit code 2 on the command line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from projected_gan import sources
from projected_gan.checkpoint import (
    CheckpointError,
    find_checkpoints,
    generator_config,
    latest_valid_checkpoint,
    load_checkpoint,
    snapshot_path,
)
from projected_gan.errors import InputError, quote
from projected_gan.export import is_export_dir, read_exported_weights
from projected_gan.registry import FEATURE_NETWORKS

__all__ = ["CHECKPOINT_CHOICES", "InitError", "InitSource", "read_init_source"]

FIELD = "train.init.source"
CHECKPOINT_CHOICES = ("latest", "best")


class InitError(InputError):
    """A ``train.init`` source that cannot be used: not a run, checkpoint, export or network
    pickle, a damaged file, or weights of which nothing fits the new run's generator."""


@dataclass
class InitSource:
    """Trained weights to start a run from, as read from SOURCE.

    Attributes:
        source: the path given, made absolute.
        kind: ``"run"``, ``"checkpoint"``, ``"export"`` or ``"official_pickle"``.
        file: the file whose tensors were read (the chosen checkpoint, ``model.safetensors``).
        sha256: hex digest of that file's bytes, as read.
        models: ``{"G": state, "G_ema": state[, "D": state]}``, tensors on the CPU.
        generator: SOURCE's generator part config ``{"kind", "name", "kwargs"}``, if known.
        feature_networks: spec forms ``{"name", **kwargs}`` of the feature network(s) D's heads
            were trained on, one per network in order; None if unknown.
        kimg: thousands of images SOURCE had trained on, if known.
        checkpoint: ``"latest"`` or ``"best"`` for a run folder, else None.
        notes: what was assumed in reading SOURCE (kept in the record).
        no_discriminator: why ``models`` holds no usable ``"D"`` (D's heads start fresh).
    """

    source: Path
    kind: str
    file: Path
    sha256: str
    models: dict[str, dict[str, torch.Tensor]]
    generator: dict[str, Any] | None = None
    feature_networks: list[dict[str, Any]] | None = None
    kimg: float | None = None
    checkpoint: str | None = None
    notes: list[str] = field(default_factory=list)
    no_discriminator: str | None = None

    def record(self) -> dict[str, Any]:
        """Where the weights came from, as plain JSON (the ``source`` part of ``init.json``)."""
        return {
            "source": str(self.source),
            "kind": self.kind,
            "file": str(self.file),
            "sha256": self.sha256,
            "checkpoint": self.checkpoint,
            "source_kimg": self.kimg,
            "source_generator": self.generator,
            "notes": list(self.notes),
        }


def read_init_source(source: str | Path, checkpoint: str = "latest") -> InitSource:
    """Read SOURCE (a run folder, checkpoint file, export folder or ``.pkl``) for ``train.init``.

    Args:
        source: the path.
        checkpoint: for a run folder, ``"latest"`` (its newest usable checkpoint, as
            ``--resume`` and ``generate`` take) or ``"best"`` (the best by its first metric).

    Raises:
        InitError: SOURCE is none of the four kinds, is damaged, or ``"best"`` does not apply.
    """
    if checkpoint not in CHECKPOINT_CHOICES:
        raise InitError(
            f"train.init.checkpoint must be one of {CHECKPOINT_CHOICES}, got {checkpoint!r}",
            field="train.init.checkpoint",
        )
    path = Path(source).expanduser().absolute()
    where = f"{FIELD} {str(source)!r}"
    try:
        kind = sources.identify(path, field=FIELD)
    except sources.SourceError as exc:
        raise InitError(str(exc), field=FIELD) from None
    if kind == sources.RUN:
        if not find_checkpoints(path):
            raise InitError(
                f"{where} is a run folder without checkpoints (checkpoints/snapshot-*.safetensors)",
                field=FIELD,
            )
        return _read_run(path, checkpoint, where)
    _only_latest(checkpoint, where, sources.describe_kind(kind))
    if kind == sources.EXPORT:
        return _read_export(path)
    if kind == sources.NETWORK_PICKLE:
        return _read_pickle(path)
    return _from_checkpoint(path, "checkpoint", _load(path, where), None)


def _only_latest(checkpoint: str, where: str, what: str) -> None:
    if checkpoint != "latest":
        raise InitError(
            f"train.init.checkpoint={checkpoint} picks a checkpoint of a run folder, but "
            f"{where} is {what}",
            field="train.init.checkpoint",
        )


def _load(path: Path, where: str):
    try:
        return load_checkpoint(path, digest=True)
    except CheckpointError as exc:
        hint = ""
        if path.name == "model.safetensors" and is_export_dir(path.parent):
            hint = f" (for an export, give its folder {str(path.parent)!r})"
        raise InitError(f"{where}: {exc}{hint}", field=FIELD) from None


def _read_run(path: Path, checkpoint: str, where: str) -> InitSource:
    try:
        ckpt = latest_valid_checkpoint(path, digest=True)
    except CheckpointError as exc:
        raise InitError(f"{where}: {exc}", field=FIELD) from None
    if checkpoint == "best":
        best_nimg = ckpt.meta.get("best_nimg")
        if best_nimg is None:
            raise InitError(
                f"{where} has no best checkpoint (no metric was computed in that run); use "
                "train.init.checkpoint=latest",
                field=FIELD,
            )
        best = snapshot_path(ckpt.path.parent, int(best_nimg))
        if best != ckpt.path:
            ckpt = _load(best, where)
    return _from_checkpoint(path, "run", ckpt, checkpoint)


def _from_checkpoint(source: Path, kind: str, ckpt, checkpoint: str | None) -> InitSource:
    """An :class:`InitSource` of a loaded checkpoint (its optimiser and RNG states dropped)."""
    missing = [name for name in ("G", "G_ema") if name not in ckpt.models]
    if missing:
        raise InitError(f"{FIELD}: {ckpt.path} holds no {' or '.join(missing)}", field=FIELD)
    try:
        generator = generator_config(ckpt)
    except CheckpointError:
        generator = None  # a hand-built G: the tensors still copy by name and shape
    nets = None  # the feature network(s) D's heads judged, as the run's spec describes them
    spec = ckpt.meta.get("spec")
    d_spec = spec.get("discriminator") if isinstance(spec, dict) else None
    if isinstance(d_spec, dict) and "discriminator" not in (ckpt.meta.get("undescribed") or {}):
        nets = d_spec.get("feature_network")
        nets = None if nets is None else nets if isinstance(nets, list) else [nets]
    nimg = ckpt.meta.get("nimg")
    if nimg is not None and type(nimg) is not int:  # a crafted meta: refuse in one line
        raise InitError(f"{FIELD}: {ckpt.path} has nimg {quote(nimg)}, not a count", field=FIELD)
    return InitSource(
        source=source,
        kind=kind,
        file=ckpt.path,
        sha256=ckpt.sha256,
        models={k: v for k, v in ckpt.models.items() if k in ("G", "G_ema", "D")},
        generator=generator,
        feature_networks=nets,
        kimg=None if nimg is None else int(nimg) / 1000,
        checkpoint=checkpoint,
        no_discriminator=None if "D" in ckpt.models else f"{ckpt.path} holds no D",
    )


def _read_export(path: Path) -> InitSource:
    try:
        exported = read_exported_weights(path)
    except InputError as exc:
        raise InitError(f"{FIELD}: {exc}", field=FIELD) from None
    nimg = (exported.config.get("training") or {}).get("images_seen")
    return InitSource(
        source=path,
        kind="export",
        file=exported.path,
        sha256=exported.sha256,
        # An export holds G_ema alone: it seeds both G and G_ema (D starts from scratch).
        models={"G": exported.state, "G_ema": exported.state},
        generator=exported.config["generator"],
        kimg=nimg / 1000 if isinstance(nimg, int) else None,
        no_discriminator="SOURCE has no discriminator (an export holds G_ema only)",
    )


def _read_pickle(path: Path) -> InitSource:
    """An official network pickle, read by :mod:`projected_gan.official` (no code in it runs)."""
    from projected_gan.official import read_network_pickle

    net = read_network_pickle(path)  # raises an InputError for anything it refuses
    models = {k: v for k, v in net.models.items() if k in ("G", "G_ema", "D")}
    nets, notes = None, []
    no_d = None if "D" in models else "the pickle holds no discriminator"
    if "D" in models and net.discriminator:
        # The heads judged the official lite0 trunk's features: this library's network with
        # the resize rule the pickle's interp224 flag stands for, when the trunk is the shipped
        # ImageNet lite0 (the reader compares them).
        form = dict(net.discriminator["kwargs"]["feature_network"])
        name = form.pop("name")
        nets = [{"name": name, **FEATURE_NETWORKS.entry(name).defaults(), **form}]
        trunk = net.info.get("feature_network") or {}
        if trunk.get("equal_to_shipped_imagenet_weights") is False:
            del models["D"]
            no_d = (
                f"the pickle's {name} trunk differs from the shipped ImageNet weights (max abs "
                f"diff {trunk.get('max_abs_diff_to_shipped_imagenet_weights')}), so D's heads "
                "start fresh"
            )
            notes.append(no_d)
    return InitSource(
        source=path,
        kind="official_pickle",
        file=Path(getattr(net, "path", path)),
        sha256=net.sha256,
        models=models,
        generator=net.generator,
        feature_networks=nets,
        kimg=net.info.get("kimg"),
        notes=notes,
        no_discriminator=no_d,
    )
