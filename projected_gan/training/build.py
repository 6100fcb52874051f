"""``build_from_spec``: the thin assembly of a :class:`Trainer` from an :class:`ExperimentSpec`.

Every part is created through its registry; each one is handed what the previous one exposes
(the data's resolution and classes to G and D, the projector's channels to the heads), so a spec
never repeats a channel count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from projected_gan import distributed
from projected_gan.precision import resolve_precision
from projected_gan.registry import create
from projected_gan.training.loop import Trainer
from projected_gan.training.spec import ExperimentSpec, SpecError

__all__ = [
    "build_discriminator",
    "build_from_spec",
    "build_generator",
    "configure_torch",
    "load_dataset",
    "resolve_device",
]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU if there is one, else CPU; a clear error for a missing GPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SpecError([("train.device", f"{name!r} asked for, but no CUDA GPU is visible")])
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def configure_torch(spec: ExperimentSpec, device: torch.device) -> None:
    """Global switches: TF32, cuDNN autotuning, deterministic algorithms."""
    t = spec.train
    if device.type == "cuda":
        tf32 = resolve_precision(t.precision, device, t.tf32).tf32  # (#15)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = not t.deterministic
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.deterministic = True


def load_dataset(spec: ExperimentSpec) -> Any:
    """The spec's image dataset (or the shipped flowers64); data errors name ``data.*`` fields."""
    from projected_gan.data import DataError, default_dataset_path, load_image_dataset

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
        )
    except DataError as exc:
        field = "data.conditional" if d.conditional and "label" in str(exc).lower() else "data.path"
        raise SpecError([(field, str(exc))]) from None


def build_generator(spec: ExperimentSpec, num_classes: int = 0) -> torch.nn.Module:
    """The generator named by ``spec.generator`` at the data's resolution."""
    g = spec.generator
    try:
        return create(
            "generators", g.name, img_resolution=spec.data.resolution, c_dim=num_classes, **g.kwargs
        )
    except (TypeError, ValueError) as exc:
        raise SpecError([("generator", f"{g.name!r} could not be built: {exc}")]) from None


def build_discriminator(spec: ExperimentSpec, num_classes: int = 0) -> torch.nn.Module:
    """The :class:`ProjectedDiscriminator` described by ``spec.discriminator``."""
    from projected_gan.discriminators import ProjectedDiscriminator

    d = spec.discriminator

    def part(p):
        return None if p is None else {"name": p.name, **p.kwargs}

    try:
        return ProjectedDiscriminator(
            feature_network=part(d.feature_network),
            projection_head=part(d.projection_head),
            discriminator=part(d.discriminator),
            augment=part(d.augment),
            num_classes=num_classes,
            img_resolution=spec.data.resolution,
            projection_seed=spec.train.seed,  # unless the head's spec names one (#15)
        )
    except (TypeError, ValueError) as exc:
        # Maps too small for the heads come from the feature network's input rule.
        field = "discriminator.feature_network" if "below 4" in str(exc) else "discriminator"
        raise SpecError([(field, str(exc))]) from None


def _evaluator(spec: ExperimentSpec, dataset: Any, device: torch.device, info):
    if not spec.metrics.names:
        return None
    from projected_gan.metrics import evaluate

    m = spec.metrics
    opts: dict[str, Any] = {}
    if {"fd", "kid"} & set(m.names):
        opts["feature_network"] = m.feature_network
    if m.fid_weights:
        opts["fid"] = {"weights": m.fid_weights}

    def run(G_ema: torch.nn.Module) -> dict[str, float]:
        # Each rank draws its own latents (seeds differ per rank), the same ones at every call.
        seed = (spec.train.seed + 777) * info.world_size + info.rank
        gen = torch.Generator(device=device).manual_seed(seed)

        @torch.no_grad()
        def generate(n: int, labels: torch.Tensor | None) -> torch.Tensor:
            z = torch.randn(n, G_ema.z_dim, device=device, generator=gen)
            return G_ema(z, labels).float()  # fp32 whatever the training precision (#15)

        return evaluate(
            generate,
            dataset,
            metrics=tuple(m.names),
            num_images=m.num_images,
            batch_size=max(spec.train.batch // info.world_size, 8),
            device=device,
            seed=spec.train.seed,
            mirror=spec.data.mirror,
            distributed=info.enabled,
            **opts,
        )

    return run


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
    spec.check()
    info = distributed.dist_info()
    dev = resolve_device(str(device) if device is not None else spec.train.device, info.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    info = distributed.init_distributed(dev)
    if spec.train.batch % info.world_size:
        raise SpecError(
            [("train.batch", f"{spec.train.batch} is not divisible by {info.world_size} processes")]
        )
    configure_torch(spec, dev)

    # Rank 0 decodes and caches the data first; the other ranks then read its cache.
    if info.enabled and not info.is_main:
        distributed.barrier()
    dataset = load_dataset(spec)
    if info.enabled and info.is_main:
        distributed.barrier()
    num_classes = dataset.num_classes if spec.data.conditional else 0
    if spec.data.conditional and num_classes < 2:
        raise SpecError(
            [("data.conditional", f"needs class sub-folders in {dataset.source}; found none")]
        )

    torch.manual_seed(spec.train.seed)  # same initial weights on every rank
    G = build_generator(spec, num_classes)
    D = build_discriminator(spec, num_classes)
    loss = create("losses", spec.loss.name)
    r1 = None
    if spec.loss.r1_gamma > 0:
        r1 = create("losses", "r1", gamma=spec.loss.r1_gamma, interval=spec.loss.r1_interval)
    if spec.train.sync_batchnorm and info.enabled:
        if dev.type != "cuda":
            raise SpecError(
                [("train.sync_batchnorm", f"SyncBatchNorm needs CUDA devices; this run uses {dev}")]
            )
        D = distributed.sync_batchnorm_heads(D)  # the heads only: the projector stays frozen

    from projected_gan.data import InfiniteBatches

    batches = InfiniteBatches(
        dataset,
        spec.train.batch // info.world_size,
        seed=spec.train.seed,
        mirror=spec.data.mirror,
        device=dev,
        rank=info.rank,
        world_size=info.world_size,
    )
    trainer = Trainer(
        G,
        D,
        loss=loss,
        batches=batches,
        spec=spec,
        run_dir=run_dir,
        device=dev,
        label_pool=dataset.labels if num_classes else None,
        r1=r1,
        evaluate=_evaluator(spec, dataset, dev, info),
        dist_info=info,
    )
    distributed.broadcast_parameters(trainer.G)
    distributed.broadcast_parameters(trainer.G_ema)
    distributed.broadcast_parameters(trainer.D)
    torch.manual_seed(spec.train.seed * info.world_size + info.rank)
    return trainer
