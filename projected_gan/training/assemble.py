"""The parts of a run built from an :class:`ExperimentSpec`, and the spec of a run's parts.

Every part is created through its registry; each one is handed what the previous one exposes
(the data's resolution and classes to G and D, the projector's channels to the heads), so a spec
never repeats a channel count. The other way round, :func:`describe_run` gives the spec of parts
put together by hand, from the configs they record: every run is described by one spec, and
resume, eval, ``train.init`` and export rebuild it through :func:`assemble`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from projected_gan import distributed
from projected_gan.configs import part_config, spec_form, wire
from projected_gan.data import (
    DataError,
    DataSpec,
    InfiniteBatches,
    default_dataset_path,
    load_dataset,
)
from projected_gan.discriminators import ProjectedDiscriminator
from projected_gan.errors import InputError, PartBuildError
from projected_gan.inference import evaluate_generator
from projected_gan.precision import configure_torch
from projected_gan.registry import create
from projected_gan.spec import ExperimentSpec, SpecError

__all__ = [
    "Assembly",
    "assemble",
    "build_discriminator",
    "build_generator",
    "build_loss",
    "check_parts",
    "describe_run",
    "load_spec_dataset",
    "metric_batch",
]

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


def _data_error(exc: DataError) -> SpecError:
    """A data error as the spec field at fault (the data's fields are the spec's)."""
    if exc.field == "batch_size":
        return SpecError([("train.batch", str(exc))])
    field = exc.field if exc.field in DataSpec.model_fields else "path"
    return SpecError([(f"data.{field}", str(exc))])


def load_spec_dataset(spec: ExperimentSpec) -> Any:
    """The spec's image dataset (or the shipped flowers64); data errors name ``data.*`` fields."""
    try:
        return load_dataset(spec.data)
    except DataError as exc:
        raise _data_error(exc) from None


def build_generator(spec: ExperimentSpec, num_classes: int = 0) -> torch.nn.Module:
    """The generator named by ``spec.generator`` at the data's resolution."""
    g = spec.generator
    filled = {
        "img_resolution": spec.data.resolution,
        # RGB is every generator's default: a plugin generator without the argument still builds
        "img_channels": None if spec.data.channels == 3 else spec.data.channels,
        "c_dim": num_classes,
    }
    try:
        return create("generators", g.name, **wire("generators", g.kwargs, filled, "generator"))
    except PartBuildError as exc:
        raise SpecError([(_field("generator", exc.field), str(exc))]) from None
    except (TypeError, ValueError) as exc:  # the part refused what the spec gave it
        raise SpecError([("generator", f"{g.name!r} could not be built: {exc}")]) from exc


def build_discriminator(spec: ExperimentSpec, num_classes: int = 0) -> torch.nn.Module:
    """The :class:`ProjectedDiscriminator` described by ``spec.discriminator``."""
    d = spec.discriminator

    def part(p):  # a part, or a list of them (one per feature network)
        if isinstance(p, list):
            return [part(x) for x in p]
        return None if p is None else {"name": p.name, **p.kwargs}

    try:
        return ProjectedDiscriminator(
            feature_network=part(d.feature_network),
            projection_head=part(d.projection_head),
            discriminator=part(d.discriminator),
            augment=part(d.augment),
            num_classes=num_classes,
            img_resolution=spec.data.resolution,
            img_channels=spec.data.channels,
            rgb=d.rgb,
            extra_branch=d.extra_branch,
            projection_seed=spec.train.seed,  # unless the head's spec names one
        )
    except PartBuildError as exc:
        field = WIRED_FROM.get(exc.field) or _field("discriminator", exc.field)
        raise SpecError([(field, str(exc))]) from None
    except (TypeError, ValueError) as exc:  # a part refused what the spec gave it
        raise SpecError([("discriminator", str(exc))]) from exc


def build_loss(spec: ExperimentSpec) -> tuple[Any, Any]:
    """The adversarial loss ``spec.loss`` (with its arguments) and the gradient penalty (R1, R2)
    or None when both are off."""
    lo = spec.loss
    try:
        loss = create("losses", lo.name, **lo.kwargs)
        penalty = None
        if lo.r1_gamma > 0 or lo.r2_gamma > 0:
            penalty = create(
                "losses",
                "gradient_penalty",
                r1_gamma=lo.r1_gamma,
                r2_gamma=lo.r2_gamma,
                interval=lo.penalty_interval,
            )
    except PartBuildError as exc:
        raise SpecError([(_field("loss", exc.field), str(exc))]) from None
    return loss, penalty


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
    penalty: Any
    batches: Any
    label_pool: torch.Tensor | None
    evaluate: Any
    dist_info: distributed.DistInfo
    device: torch.device


def _start(spec: ExperimentSpec) -> tuple[torch.device, distributed.DistInfo]:
    """This process's device, joined to the process group (torchrun), torch configured."""
    try:
        dev, info = distributed.join(spec.train.device)
    except InputError as exc:
        raise SpecError([("train.device", str(exc))]) from None
    if spec.train.batch % info.world_size:
        raise SpecError(
            [("train.batch", f"{spec.train.batch} is not divisible by {info.world_size} processes")]
        )
    configure_torch(spec.train, dev)
    return dev, info


def assemble(spec: ExperimentSpec) -> Assembly:
    """Data, G, D (projector + heads + augmentation), loss and R1 of ``spec``, on its device.

    Joins the process group when launched by torchrun; every rank gets the same initial weights.
    """
    spec.check()
    dev, info = _start(spec)
    dataset = distributed.node_first(info, lambda: load_spec_dataset(spec))
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
    loss, penalty = build_loss(spec)
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
        raise _data_error(exc) from None
    return Assembly(
        G=G,
        D=D,
        loss=loss,
        penalty=penalty,
        batches=batches,
        label_pool=dataset.labels if num_classes else None,
        evaluate=_evaluator(spec, dataset, dev, info),
        dist_info=info,
        device=dev,
    )


# ------------------------------------------------------------------------------ parts -> spec
# The dataset fields that decide which images a run sees (the others say how to read them).
_SAME_DATA = ("resolution", "fit", "channels", "conditional", "max_images", "mirror")


def _describe_parts(raw: dict, G: Any, D: Any, loss: Any, penalty: Any) -> dict[str, str]:
    """Put the spec forms of G, D and the loss (+ penalties) into ``raw``; return the sections their
    parts cannot describe (not built through the registries), each with the reason."""
    missing = {}
    g, d, lo = part_config(G), part_config(D), part_config(loss)
    if g is None or g["kind"] != "generators":
        missing["generator"] = f"G ({type(G).__name__}) was not built through a registry"
    else:
        raw["generator"] = spec_form(g)
    if d is None or d["kind"] != "projected_discriminator":
        missing["discriminator"] = (
            f"D ({type(D).__name__}) is not a ProjectedDiscriminator of registered parts"
        )
    else:
        names = ("feature_network", "projection_head", "discriminator", "augment")
        names += ("rgb", "extra_branch")
        raw["discriminator"] = {k: d["kwargs"][k] for k in names}
    r = None if penalty is None else part_config(penalty)
    if lo is None or lo["kind"] != "losses" or (penalty is not None and r is None):
        missing["loss"] = "the loss or the gradient penalty was not built through a registry"
    else:
        raw["loss"] = {**spec_form(lo), "r1_gamma": 0.0, "r2_gamma": 0.0}
        if r is not None:
            kw = r["kwargs"]
            raw["loss"].update(
                r1_gamma=kw["r1_gamma"], r2_gamma=kw["r2_gamma"], penalty_interval=kw["interval"]
            )
    return missing


def _describe_data(raw: dict, batches: Any, seed_given: bool) -> str | None:
    """Put the data section (and the order's seed) of ``batches`` into ``raw``; the reason when
    they cannot say which images they hold."""
    recorded = getattr(getattr(batches, "dataset", None), "spec", None)
    if recorded is None:
        return "the batches are not InfiniteBatches of load_image_dataset(...) (data in memory?)"
    own = {**recorded.model_dump(), "mirror": bool(batches.mirror)}
    try:
        DataSpec.model_validate(own)
    except ValidationError as exc:
        return f"its data cannot be a spec's: {exc.errors()[0]['msg']}"
    given = raw["data"]
    path = Path(given["path"] or default_dataset_path()).expanduser().resolve()
    if not (str(path) == own["path"] and all(given[k] == own[k] for k in _SAME_DATA)):
        raw["data"] = own
    if batches.seed != raw["train"]["seed"]:
        if seed_given:
            raise SpecError(
                [
                    (
                        "train.seed",
                        f"{raw['train']['seed']}, but the batches draw their order with seed "
                        f"{batches.seed}; make them agree (or leave train.seed out)",
                    )
                ]
            )
        raw["train"]["seed"] = batches.seed
    return None


def describe_run(
    spec: ExperimentSpec | None,
    parts: tuple[Any, Any, Any, Any],
    batches: Any,
    world_size: int,
    evaluate: Any = None,
) -> tuple[ExperimentSpec, int, dict[str, str]]:
    """The complete spec of a trainer's ``parts`` (G, D, loss, R1), ``batches`` and
    ``evaluate`` (None: ``metrics.names`` is empty), its per-process batch, and the sections
    it cannot describe (section -> why).

    ``spec`` gives everything the parts do not decide (schedule, optimiser, output, ...). Its
    ``generator``, ``discriminator`` and ``loss`` become the forms the parts record; its data
    section that of the batches' dataset (kept as written when it names the same images). A
    section the parts cannot describe (a custom module, data made in memory) keeps ``spec``'s
    value and is returned: such a run trains, but cannot be rebuilt from its checkpoints.
    """
    per_rank = getattr(batches, "batch_size", None)
    if spec is None and per_rank is None:
        raise TypeError("batches has no batch_size: pass spec= with train.batch (the global batch)")
    raw = (spec or ExperimentSpec()).to_dict()
    if spec is None:
        raw["train"]["batch"] = per_rank * world_size
    t = raw["train"]
    if per_rank is not None and per_rank * world_size != t["batch"]:
        processes = f" x {world_size} processes" if world_size > 1 else ""
        raise SpecError(
            [
                (
                    "train.batch",
                    f"{t['batch']}, but the batches hold {per_rank} images{processes} per step; "
                    "make them agree (or pass no spec to take the batches' size)",
                )
            ]
        )
    if t["batch"] % world_size:
        raise SpecError(
            [("train.batch", f"{t['batch']} is not divisible by the {world_size} processes")]
        )
    missing = _describe_parts(raw, *parts)
    if evaluate is None:  # no metrics run during training
        raw["metrics"]["names"] = []
    seed_given = spec is not None and "seed" in spec.train.model_fields_set
    why = _describe_data(raw, batches, seed_given)
    if why:  # what G says of its data
        missing["data"] = why
        G = parts[0]
        raw["data"]["conditional"] = bool(getattr(G, "c_dim", 0))
        raw["data"]["resolution"] = getattr(G, "img_resolution", raw["data"]["resolution"])
        raw["data"]["channels"] = getattr(G, "img_channels", raw["data"]["channels"])
    described = ExperimentSpec.validate_dict(raw, source="the trainer's parts")
    per_rank = described.train.batch // world_size
    micro = described.train.batch_gpu
    if micro is not None and per_rank % micro:
        raise SpecError(
            [
                (
                    "train.batch_gpu",
                    f"{micro} does not divide the per-process batch {per_rank} "
                    f"(train.batch {t['batch']} / {world_size} processes)",
                )
            ]
        )
    return described, per_rank, missing
