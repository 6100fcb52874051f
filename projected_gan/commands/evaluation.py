"""``projected-gan eval``: metrics of a checkpoint, an official pickle or two image folders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from projected_gan.atomic import atomic_write_json
from projected_gan.devices import resolve_device
from projected_gan.errors import UsageError
from projected_gan.sizes import Size, SizeLike, as_size, size_text
from projected_gan.spec import ExperimentSpec

__all__ = ["evaluate_checkpoint", "evaluate_image_folders"]


def _metric_options(
    feature_network: str | None, inception_weights: str | None, fd_default: str | None = None
) -> dict[str, Any]:
    """``--feature-network`` moves fd, kid and pr; ``--inception-weights`` feeds every metric in
    the Inception space."""
    options: dict[str, Any] = {}
    if feature_network:
        options["feature_network"] = feature_network
    elif fd_default:
        options["fd"] = {"feature_network": fd_default}
    if inception_weights:
        options["weights"] = inception_weights
    return options


def _comparability(key: str, space: str) -> str:
    if space != "inception":
        return "for this library's runs only"
    if key in ("precision", "recall"):
        return "the paper measures in VGG-16 space"
    return "comparable with papers"


def _view_line(size: Size, channels: int, view: str) -> str:
    return f"{size_text(size)}, {channels} channel(s); the metrics see: {view}"


def _print_results(results: dict[str, float], metrics: list[Any]) -> dict[str, str]:
    """A table of the results, each with its feature space (KID x 10^3, as papers print it);
    returns ``{result: space}``."""
    spaces = {key: getattr(m, "space", "?") for m in metrics for key in m.results}
    rows = []
    for key, value in results.items():
        scaled = key in ("kid", "kid_std")
        space = spaces.get(key, "?")
        rows.append(
            (
                f"{key} x10^3" if scaled else key,
                f"{value * 1e3 if scaled else value:.6g}",
                f"{space} ({_comparability(key, space)})",
            )
        )
    width, digits = (max(len(r[i]) for r in rows) for i in (0, 1))
    print(f"{'metric':<{width}}  {'value':>{digits}}  space")
    for label, value, space in rows:
        print(f"{label:<{width}}  {value:>{digits}}  {space}")
    return spaces


def evaluate_checkpoint(
    checkpoint: str,
    *,
    data: str | None = None,
    metrics: str | None = None,
    num: int = 10_000,
    batch: int | None = None,
    feature_network: str | None = None,
    inception_weights: str | None = None,
    precision: str | None = None,
    json_out: str | None = None,
    device: str | None = None,
) -> dict[str, float]:
    """Metrics of a checkpoint's G_ema against a dataset (default: the run's own data and its
    ``metrics.names``, else ``fd``).

    Fakes are drawn as in training (same latents, the run's precision, memory layout and metric
    batch), so ``--num`` equal to the run's ``metrics.num_images`` reproduces its logged scores.
    """
    import torch

    from projected_gan import sources
    from projected_gan.checkpoint import check_described
    from projected_gan.inference import (
        evaluate_generator,
        generator_from_checkpoint,
        resolve_checkpoint,
    )
    from projected_gan.metrics import (
        build_metrics,
        check_image_shape,
        dataset_image_shape,
        metric_view,
    )
    from projected_gan.training.assemble import load_spec_dataset, metric_batch

    if num < 2:
        raise UsageError(f"--num must be at least 2, got {num}", field="--num")
    dev = resolve_device(device)
    kind = sources.identify(checkpoint, field="CHECKPOINT")
    if kind in (sources.NETWORK_PICKLE, sources.EXPORT):
        G, spec = _generator_alone(checkpoint, kind, data, dev)
    else:
        ckpt = resolve_checkpoint(checkpoint)
        if data is None:
            fix = "Say which images to compare with: --data DIR_OR_ZIP."
            check_described(ckpt, ("data",), fix)
        G = generator_from_checkpoint(ckpt, device=dev)
        spec = ExperimentSpec.validate_dict(ckpt.meta.get("spec", {}), source=str(ckpt.path))
    if spec.train.channels_last:  # as in training: the layout changes bf16/fp32 rounding too
        G = G.to(memory_format=torch.channels_last)
    # The run's own data (another folder with --data), at the generator's size and channels.
    (h, w), channels = as_size(G.img_size, "G.img_size"), int(G.img_channels)
    update: dict[str, Any] = {"resolution": h if h == w else (h, w), "channels": channels}
    if data is not None:
        update["path"] = data
    spec = spec.model_copy(update={"data": spec.data.model_copy(update=update)})
    dataset = load_spec_dataset(spec)
    try:
        check_image_shape((channels, h, w), dataset_image_shape(dataset), "the generator")
    except ValueError as exc:
        raise UsageError(str(exc), field="--data") from exc
    view = metric_view(channels)
    weights = inception_weights or spec.metrics.fid_weights
    options = _metric_options(feature_network, weights, spec.metrics.feature_network)
    built = build_metrics(metrics or spec.metrics.names or ["fd"], **options)
    results = evaluate_generator(
        G,
        dataset,
        metrics=built,
        num_images=num,
        batch_size=batch or metric_batch(spec),
        device=dev,
        seed=spec.train.seed,
        precision=precision or spec.train.precision,
        mirror=spec.data.mirror,
    )
    spaces = _print_results(results, built)
    print(f"images: {_view_line((h, w), channels, view)}")
    if json_out:
        record = {
            "checkpoint": str(checkpoint),
            "data": dataset.source,
            "num_images": num,
            "size": [h, w],
            "channels": channels,
            "view": view,
        }
        atomic_write_json(json_out, {**record, **results, "spaces": spaces})
    return results


def evaluate_image_folders(
    real: str | None,
    fake: str | None,
    *,
    metrics: str = "fid",
    resolution: SizeLike | str | None = None,
    channels: int = 3,
    fit: str = "crop",
    batch: int = 64,
    feature_network: str | None = None,
    inception_weights: str | None = None,
    json_out: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Metrics of the images in ``fake`` against those in ``real`` (folders or zips), both read
    at ``resolution`` (one side, ``(H, W)`` or the command line's ``"64x96"``; default: the
    first fake image's size) with ``channels`` channels and ``fit``, as
    :func:`~projected_gan.metrics.evaluate_folders`."""
    from projected_gan.commands.datasets import parse_resolution
    from projected_gan.metrics import build_metrics, evaluate_folders, metric_view
    from projected_gan.metrics.folders import read_size

    if not real or not fake:
        raise UsageError("give both --real DIR_OR_ZIP and --fake DIR_OR_ZIP", field="--real")
    if isinstance(resolution, str):
        resolution = parse_resolution(resolution)
    size = read_size(fake, resolution, channels, fit)
    view = metric_view(channels)
    built = build_metrics(metrics, **_metric_options(feature_network, inception_weights))
    print(f"reading both sets at {_view_line(size, channels, view)} (fit {fit})", file=sys.stderr)
    results = evaluate_folders(
        real,
        fake,
        built,
        resolution=size,
        channels=channels,
        fit=fit,
        batch_size=batch,
        device=resolve_device(device),
        progress=progress,
    )
    spaces = _print_results(results, built)
    if json_out:
        h, w = size
        record = {
            "real": str(real),
            "fake": str(fake),
            "resolution": h if h == w else [h, w],
            "channels": channels,
            "fit": fit,
            "view": view,
        }
        atomic_write_json(json_out, {**record, **results, "spaces": spaces})
    return results


def _generator_alone(
    path: str, kind: str, data: str | None, device: Any
) -> tuple[Any, ExperimentSpec]:
    """G_ema of a network pickle or an export folder, and the default spec to evaluate it with:
    neither records a run's spec, so the metrics, seed, precision and batch are this library's
    defaults, and the real images must be given."""
    from projected_gan import sources
    from projected_gan.inference import load_generator
    from projected_gan.official import generator_from_pickle, read_network_pickle

    nets = read_network_pickle(path) if kind == sources.NETWORK_PICKLE else None
    if data is None:
        recorded = (nets.info.get("training_set_kwargs") or {}).get("path") if nets else None
        used = f" (its run used {recorded!r})" if recorded else ""
        raise UsageError(
            f"--data: {Path(path).name} is {sources.describe_kind(kind)}, which holds no data "
            f"this library can read{used}; pass the real images",
            field="--data",
        )
    G = generator_from_pickle(nets, device=device) if nets else load_generator(path, device=device)
    spec = ExperimentSpec.validate_dict(
        {"data": {"conditional": G.c_dim > 0}}, source=f"defaults for {Path(path).name}"
    )
    return G, spec
