"""The parts of a run built from an :class:`ExperimentSpec`: data, G, D, loss, metrics.

Every part is created through its registry; each one is handed what the previous one exposes
(the data's resolution and classes to G and D, the projector's channels to the heads), so a spec
never repeats a channel count.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from projected_gan import distributed
from projected_gan.checkpoint import Checkpoint, CheckpointError
from projected_gan.configs import wire
from projected_gan.data import DataError, InfiniteBatches, default_dataset_path, load_image_dataset
from projected_gan.devices import resolve_device
from projected_gan.discriminators import ProjectedDiscriminator
from projected_gan.errors import InputError, PartBuildError
from projected_gan.fitting import check_part_config
from projected_gan.inference import evaluate_generator
from projected_gan.precision import resolve_precision
from projected_gan.registry import create, create_from_config
from projected_gan.training.spec import ExperimentSpec, SpecError

__all__ = [
    "Assembly",
    "assemble",
    "build_discriminator",
    "build_generator",
    "build_loss",
    "check_parts",
    "configure_torch",
    "data_record",
    "load_dataset",
    "metric_batch",
    "reassemble",
    "resolve_device",
    "spec_and_batch",
]


def configure_torch(spec: ExperimentSpec, device: torch.device) -> None:
    """Global switches: TF32, cuDNN autotuning, deterministic algorithms."""
    t = spec.train
    if device.type == "cuda":
        tf32 = resolve_precision(t.precision, device, t.tf32).tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = not t.deterministic
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.deterministic = True


# The spec field behind each argument of load_image_dataset / InfiniteBatches.
DATA_FIELDS = {
    "path": "data.path",
    "resolution": "data.resolution",
    "use_labels": "data.conditional",
    "min_images": "data.min_images",
    "max_images": "data.max_images",
    "workers": "data.workers",
    "storage": "data.storage",
    "batch_size": "train.batch",
}
# The spec section that decides each argument the pipeline wires into D's heads.
WIRED_FROM = {
    "image_size": "discriminator.feature_network",  # its input size and resize rule
    "channels": "discriminator.projection_head",
    "reductions": "discriminator.projection_head",
}


def _field(section: str, field: str | None) -> str:
    """``field`` (an argument, or a path inside ``section``) as a spec field path."""
    if not field:
        return section
    field = re.sub(r"\[(\d+)\]", r".\1", field)  # feature_network[1] -> feature_network.1
    return field if field.startswith(section + ".") else f"{section}.{field}"


def load_dataset(spec: ExperimentSpec) -> Any:
    """The spec's image dataset (or the shipped flowers64); data errors name ``data.*`` fields."""
    d = spec.data
    path = Path(d.path) if d.path else default_dataset_path()
    try:
        return load_image_dataset(
            path,
            d.resolution,
            use_labels=d.conditional,
            cache_dir=d.cache_dir,
            strict=d.strict,
            min_images=d.min_images,
            max_images=d.max_images,
            workers=d.workers,
            storage=d.storage,
        )
    except DataError as exc:
        raise SpecError([(DATA_FIELDS.get(exc.field, "data.path"), str(exc))]) from None


def build_generator(spec: ExperimentSpec, num_classes: int = 0) -> torch.nn.Module:
    """The generator named by ``spec.generator`` at the data's resolution."""
    g = spec.generator
    filled = {"img_resolution": spec.data.resolution, "c_dim": num_classes}
    try:
        return create("generators", g.name, **wire("generators", g.kwargs, filled, "generator"))
    except PartBuildError as exc:
        raise SpecError([(_field("generator", exc.field), str(exc))]) from None
    except (TypeError, ValueError) as exc:  # the part refused what the spec gave it
        raise SpecError([("generator", f"{g.name!r} could not be built: {exc}")]) from exc


def build_discriminator(spec: ExperimentSpec, num_classes: int = 0) -> torch.nn.Module:
    """The :class:`ProjectedDiscriminator` described by ``spec.discriminator``."""
    d = spec.discriminator

    def part(p):
        return None if p is None else {"name": p.name, **p.kwargs}

    try:
        return ProjectedDiscriminator(
            feature_network=(
                [part(p) for p in d.feature_network]
                if isinstance(d.feature_network, list)
                else part(d.feature_network)
            ),
            projection_head=part(d.projection_head),
            discriminator=part(d.discriminator),
            augment=part(d.augment),
            num_classes=num_classes,
            img_resolution=spec.data.resolution,
            projection_seed=spec.train.seed,  # unless the head's spec names one
        )
    except PartBuildError as exc:
        field = WIRED_FROM.get(exc.field) or _field("discriminator", exc.field)
        raise SpecError([(field, str(exc))]) from None
    except (TypeError, ValueError) as exc:  # a part refused what the spec gave it
        raise SpecError([("discriminator", str(exc))]) from exc


def build_loss(spec: ExperimentSpec) -> tuple[Any, Any]:
    """The adversarial loss ``spec.loss`` (with its arguments) and the R1 regulariser or None."""
    try:
        loss = create("losses", spec.loss.name, **spec.loss.kwargs)
        r1 = None
        if spec.loss.r1_gamma > 0:
            r1 = create("losses", "r1", gamma=spec.loss.r1_gamma, interval=spec.loss.r1_interval)
    except PartBuildError as exc:
        raise SpecError([(_field("loss", exc.field), str(exc))]) from None
    return loss, r1


def check_parts(spec: ExperimentSpec) -> None:
    """Build G, D, the loss and the loggers once on the CPU and drop them: what a run would
    refuse before reading any data (argument values, plugin constructors, D's dry forward, a
    logger's missing package) is refused here, as a :class:`SpecError` (an :class:`InputError`
    for a missing package). A conditional spec is checked with one class (the data decides).
    """
    from projected_gan.training.run_log import build_loggers

    num_classes = 1 if spec.data.conditional else 0
    with torch.no_grad():
        build_generator(spec, num_classes)
        build_discriminator(spec, num_classes)
    build_loss(spec)
    build_loggers(spec)  # a logger's missing package or refused argument


def metric_batch(spec: ExperimentSpec, world_size: int = 1) -> int:
    """Images per metric forward pass of one process (the training batch, at least 8)."""
    return max(spec.train.batch // world_size, 8)


def _evaluator(spec: ExperimentSpec, dataset: Any, device: torch.device, info):
    if not spec.metrics.names:
        return None
    m = spec.metrics

    def run(G_ema: torch.nn.Module) -> dict[str, float]:
        # Each rank draws its own latents (seeds differ per rank), the same ones at every call.
        return evaluate_generator(
            G_ema,
            dataset,
            metrics=m.names,
            num_images=m.num_images,
            batch_size=metric_batch(spec, info.world_size),
            device=device,
            seed=spec.train.seed,
            precision=spec.train.precision,
            mirror=spec.data.mirror,
            feature_network=m.feature_network,
            fid_weights=m.fid_weights,
            rank=info.rank,
            world_size=info.world_size,
        )

    return run


@dataclass
class Assembly:
    """What a :class:`~projected_gan.training.trainer.Trainer` is made of, built from a spec."""

    G: torch.nn.Module
    D: torch.nn.Module
    loss: Any
    r1: Any
    batches: Any
    label_pool: torch.Tensor | None
    evaluate: Any
    dist_info: distributed.DistInfo
    device: torch.device


def _start(
    spec: ExperimentSpec, device: str | torch.device | None
) -> tuple[torch.device, distributed.DistInfo]:
    """This process's device, joined to the process group (torchrun), torch configured."""
    info = distributed.dist_info()
    try:
        dev = resolve_device(device if device is not None else spec.train.device, info.local_rank)
    except InputError as exc:
        raise SpecError([("train.device", str(exc))]) from None
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    info = distributed.init_distributed(dev)
    if spec.train.batch % info.world_size:
        raise SpecError(
            [("train.batch", f"{spec.train.batch} is not divisible by {info.world_size} processes")]
        )
    configure_torch(spec, dev)
    return dev, info


def _node_first(info: distributed.DistInfo, load: Callable[[], Any]) -> Any:
    """``load()`` on each node's first process (local rank 0) first, then on the node's others.

    The first process of every node decodes that node's cache while the node's other processes
    wait; they then map it. A cache on a filesystem that all nodes share is built once: the
    first processes of the nodes meet at the cache's lock file, and those that come second find
    it built (:func:`projected_gan.data.store.build_lock`).
    """
    first = info.local_rank == 0
    if info.enabled and not first:
        distributed.barrier()
    result = load()
    if info.enabled and first:
        distributed.barrier()
    return result


def assemble(spec: ExperimentSpec, device: str | torch.device | None = None) -> Assembly:
    """Data, G, D (projector + heads + augmentation), loss and R1 of ``spec``, on its device.

    Joins the process group when launched by torchrun; every rank gets the same initial weights.
    """
    spec.check()
    dev, info = _start(spec, device)
    dataset = _node_first(info, lambda: load_dataset(spec))
    num_classes = dataset.num_classes if spec.data.conditional else 0
    if spec.data.conditional and num_classes < 2:
        raise SpecError(
            [
                (
                    "data.conditional",
                    f"needs two or more classes (a dataset.json or class sub-folders) in "
                    f"{dataset.source}; found {num_classes}",
                )
            ]
        )

    torch.manual_seed(spec.train.seed)  # same initial weights on every rank
    G = build_generator(spec, num_classes)
    D = build_discriminator(spec, num_classes)
    loss, r1 = build_loss(spec)
    if spec.train.sync_batchnorm and info.enabled:
        if dev.type != "cuda":
            raise SpecError(
                [("train.sync_batchnorm", f"SyncBatchNorm needs CUDA devices; this run uses {dev}")]
            )
        D = distributed.sync_batchnorm_heads(D)  # the heads only: the projector stays frozen

    try:
        batches = InfiniteBatches(
            dataset,
            spec.train.batch // info.world_size,
            seed=spec.train.seed,
            mirror=spec.data.mirror,
            device=dev,
            rank=info.rank,
            world_size=info.world_size,
        )
    except DataError as exc:
        raise SpecError([(DATA_FIELDS.get(exc.field, "data.path"), str(exc))]) from None
    return Assembly(
        G=G,
        D=D,
        loss=loss,
        r1=r1,
        batches=batches,
        label_pool=dataset.labels if num_classes else None,
        evaluate=_evaluator(spec, dataset, dev, info),
        dist_info=info,
        device=dev,
    )


def data_record(batches: Any) -> dict[str, Any] | None:
    """How to load a hand-built run's data again: the dataset's loading arguments, the mirror
    flag and seed of its batches, and its fingerprint; None for data made in memory."""
    args = getattr(batches, "dataset_args", None)
    if not args:
        return None
    return {
        **args,
        "mirror": bool(batches.mirror),
        "seed": int(batches.seed),
        "fingerprint": getattr(batches, "dataset_fingerprint", ""),
    }


def reassemble(
    ckpt: Checkpoint, spec: ExperimentSpec, device: str | torch.device | None = None
) -> Assembly:
    """The parts of a hand-built run (``Trainer(G, D, ...)``), from what its checkpoint recorded:
    the configs of G, D, loss and R1, and the data's loading arguments."""
    parts = ckpt.meta.get("parts") or {}
    if not isinstance(parts, dict):
        raise CheckpointError(f"{ckpt.path}: its recorded parts are not an object")
    missing = [name for name in ("G", "D", "loss") if not parts.get(name)]
    if missing:
        raise CheckpointError(
            f"{ckpt.path} comes from a hand-built Trainer whose {', '.join(missing)} were not "
            "built through the registries, so they cannot be rebuilt from the checkpoint. "
            "Build the same modules, pass them to Trainer(..., run_dir=RUN) and call "
            "trainer.load_latest()."
        )
    # a part of another kind, or arguments out of range, is refused before anything is built
    check_part_config(parts["G"], "generators", f"{ckpt.path}: parts.G", CheckpointError)
    data = ckpt.meta.get("data")
    if not data:
        raise CheckpointError(
            f"{ckpt.path} comes from a hand-built Trainer that recorded no data (its batches "
            "were not InfiniteBatches over load_image_dataset(path, ...)), so the run cannot be "
            "resumed by itself. Build the Trainer with your data, run_dir=RUN, and call "
            "trainer.load_latest()."
        )
    dev, info = _start(spec, device)
    dataset = _node_first(
        info,
        lambda: load_image_dataset(
            data["path"],
            data["resolution"],
            use_labels=data["use_labels"],
            channels=data["channels"],
            max_images=data["max_images"],
            cache_dir=spec.data.cache_dir,
            storage=data.get("storage", "auto"),
        ),
    )
    if data.get("fingerprint") and dataset.fingerprint != data["fingerprint"]:
        warnings.warn(
            f"the files in {data['path']} changed since the run was saved; resuming on them",
            stacklevel=2,
        )
    torch.manual_seed(spec.train.seed)  # same initial weights on every rank
    G = create_from_config(parts["G"])
    D = create_from_config(parts["D"])
    r1 = create_from_config(parts["r1"]) if parts.get("r1") else None
    batches = InfiniteBatches(
        dataset,
        spec.train.batch // info.world_size,
        seed=data["seed"],
        mirror=data["mirror"],
        device=dev,
        rank=info.rank,
        world_size=info.world_size,
    )
    return Assembly(
        G=G,
        D=D,
        loss=create_from_config(parts["loss"]),
        r1=r1,
        batches=batches,
        label_pool=dataset.labels if getattr(G, "c_dim", 0) else None,
        evaluate=None,
        dist_info=info,
        device=dev,
    )


def spec_and_batch(
    spec: ExperimentSpec | None, batches: Any, world_size: int
) -> tuple[ExperimentSpec, int]:
    """The run's spec and per-process batch, which the batches handed in decide.

    Without a spec, ``train.batch`` is the batches' ``batch_size`` times the processes; with
    one, the two must agree (a silent mismatch would draw and count the wrong number of fakes).
    """
    per_rank = getattr(batches, "batch_size", None)
    if spec is None:
        if per_rank is None:
            raise TypeError(
                "batches has no batch_size: pass spec= with train.batch (the global batch)"
            )
        spec = ExperimentSpec()
        spec.train.batch = per_rank * world_size
        return spec, per_rank
    t = spec.train
    if per_rank is not None and per_rank * world_size != t.batch:
        processes = f" x {world_size} processes" if world_size > 1 else ""
        raise SpecError(
            [
                (
                    "train.batch",
                    f"{t.batch}, but the batches hold {per_rank} images{processes} per step; "
                    "make them agree (or pass no spec to take the batches' size)",
                )
            ]
        )
    if t.batch % world_size:
        raise SpecError(
            [("train.batch", f"{t.batch} is not divisible by the {world_size} processes")]
        )
    per_rank = t.batch // world_size
    if t.batch_gpu is not None and per_rank % t.batch_gpu:
        raise SpecError(
            [
                (
                    "train.batch_gpu",
                    f"{t.batch_gpu} does not divide the per-process batch {per_rank} "
                    f"(train.batch {t.batch} / {world_size} processes)",
                )
            ]
        )
    return spec, per_rank
