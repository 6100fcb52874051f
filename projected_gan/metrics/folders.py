"""Metrics between two folders (or zips) of images made by anything: ``projected-gan eval
--real A --fake B``, like ``python -m pytorch_fid A B``.

Both sets are read by the training data reader (:mod:`projected_gan.data.decode`): any size and
format it reads, decoded to ``channels`` channels and brought to ``resolution`` ``(H, W)`` the
way training prepares its data (``fit``: centre crop, black pad or stretch to the aspect, then a
LANCZOS resize). The default size is the first fake image's ``(H, W)``, so generated images of
one size pass untouched, and reals are prepared exactly as for training at that size. The
metrics see the RGB view of both sets (:func:`~projected_gan.metrics.features.as_uint8_rgb`),
then their network's own resize (Inception: TF-1.x bilinear, stretching ``H x W`` to 299 x 299).
Images are decoded and embedded batch by batch, so memory does not grow with the number of
images. The reals' statistics are cached like
:func:`~projected_gan.metrics.evaluate.evaluate`'s, keyed by the folder's fingerprint (names,
sizes, modification times), ``(H, W)``, channels, fit and extractor.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from projected_gan.data.decode import check_read_settings, iter_decoded, shown_size
from projected_gan.data.files import DataError, DataWarning, Source, fingerprint, open_source
from projected_gan.devices import resolve_device
from projected_gan.metrics.base import Metric, build_metrics
from projected_gan.metrics.evaluate import (
    _check_batch_size,
    _compute,
    _feature_pass,
    _group,
    _real_statistics,
)
from projected_gan.metrics.features import as_uint8_rgb
from projected_gan.metrics.stats_cache import StatsCache, real_stats_key
from projected_gan.sizes import Size, SizeLike, as_size, size_text

__all__ = ["evaluate_folders", "folder_size", "read_size"]


def folder_size(path: str | os.PathLike) -> Size:
    """``(H, W)`` of the first readable image (sorted order) of a folder or zip, as the reader
    sees it (EXIF rotation applied): the default size of :func:`evaluate_folders`."""
    source = open_source(Path(path).expanduser())
    try:
        for member in source.members:
            try:
                with Image.open(source.open(member.name)) as image:  # header only
                    w, h = shown_size(image)
                    return (h, w)
            except Exception:  # unreadable: the reader skips it too; try the next one
                continue
    finally:
        source.close()
    raise DataError(f"no readable image in {path}")


def read_size(
    fake: str | os.PathLike, resolution: SizeLike | None, channels: int, fit: str
) -> Size:
    """The ``(H, W)`` :func:`evaluate_folders` reads both sets at (``resolution``, else
    :func:`folder_size` of ``fake``), once ``resolution``, ``channels`` and ``fit`` are checked
    (:class:`~projected_gan.data.files.DataError` naming the argument)."""
    check_read_settings(channels, fit)
    if resolution is None:
        return folder_size(fake)
    try:
        size = as_size(resolution)
    except ValueError as exc:
        raise DataError(str(exc), field="resolution") from None
    if min(size) < 8:
        raise DataError(
            f"resolution: each side must be at least 8 pixels, got {size_text(size)}",
            field="resolution",
        )
    return size


def _batches(
    source: Source,
    size: Size,
    channels: int,
    fit: str,
    batch_size: int,
    device: torch.device,
    workers: int,
    bar: Any,
    problems: dict[str, Any],
) -> Iterator[torch.Tensor]:
    """uint8 RGB views ``(B, 3, H, W)`` on ``device``; counts images and unreadable files."""
    parts = iter_decoded(source, size, channels, fit=fit, workers=workers, window=batch_size)
    for part in parts:
        problems["skipped"] += [name for name, _ in part.skipped]
        problems["upscaled"] += part.upscaled
        problems["count"] += len(part.names)
        if bar is not None:
            bar.update(len(part.names) + len(part.skipped))
        if part.names:
            yield as_uint8_rgb(torch.from_numpy(part.images)).to(device, non_blocking=True)


def _progress(total: int, desc: str, enabled: bool):  # -> tqdm | None
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False)


def _folder_statistics(
    path: Path,
    groups: list,
    size: Size,
    channels: int,
    fit: str,
    batch_size: int,
    device: torch.device,
    workers: int,
    progress: bool,
    cache: StatsCache | None,
    real: bool,
) -> list:
    """Each group's statistics of one folder (reals: through the cache)."""
    source = open_source(path)
    problems: dict[str, Any] = {"skipped": [], "upscaled": 0, "count": 0}
    bar = _progress(len(source.members), "real images" if real else "fake images", progress)
    try:

        def batches() -> Iterator[torch.Tensor]:
            return _batches(source, size, channels, fit, batch_size, device, workers, bar, problems)

        if real:
            key = real_stats_key(
                fingerprint(source), size, channels, fit, mirror=False, num_real=len(source.members)
            )
            stats = _real_statistics(groups, key, batches, device, cache)
        else:
            stats = _feature_pass(groups, batches(), device)
    finally:
        source.close()
        if bar is not None:
            bar.close()
    skipped, upscaled = problems["skipped"], problems["upscaled"]
    if skipped:
        more = f", ... ({len(skipped) - 5} more)" if len(skipped) > 5 else ""
        warnings.warn(
            f"skipped {len(skipped)} unreadable file(s) in {path}: {', '.join(skipped[:5])}{more}",
            DataWarning,
            stacklevel=3,
        )
    if upscaled:
        warnings.warn(
            f"{upscaled} image(s) in {path} are smaller than {size_text(size)} and were upscaled",
            DataWarning,
            stacklevel=3,
        )
    if stats[0].num_items == 0:
        raise DataError(f"no readable image in {path}")
    return stats


def evaluate_folders(
    real: str | os.PathLike,
    fake: str | os.PathLike,
    metrics: str | Sequence[str | Metric] = ("fid",),
    *,
    resolution: SizeLike | None = None,
    channels: int = 3,
    fit: str = "crop",
    batch_size: int = 64,
    device: torch.device | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
    **metric_options: Any,
) -> dict[str, float]:
    """Metrics of the images in ``fake`` against those in ``real`` (folders or zips).

    Args:
        real, fake: image folders (searched recursively) or zips.
        metrics: registry names (``"fid,kid,pr"``) or :class:`Metric` objects.
        resolution: size both sets are brought to by the data reader: one side (square) or
            ``(H, W)``; ``None`` = the size of ``fake``'s first image (:func:`folder_size`).
        channels: channels the reader decodes (1 luma, 3 RGB, 4 RGBA, ...), as the data of the
            generator's run; the metrics see the RGB view of them.
        fit: images of another aspect: ``"crop"`` (centre), ``"pad"`` (black) or
            ``"stretch"``, as the run's ``data.fit``.
        batch_size: images per decode window and extractor call.
        device: where features are computed; default CUDA when available.
        cache_dir, use_cache: real-statistics cache, as in ``evaluate``.
        seed: KID subsets.
        workers: decoding threads (default: the number of CPU cores).
        progress: show progress bars (on a terminal).
        **metric_options: routed to the metrics, see :func:`build_metrics`.

    Returns:
        ``{"fid": ..., "kid": ..., "kid_std": ..., "precision": ..., "recall": ...}`` for the
        requested metrics.

    Raises:
        DataError: a path is missing, empty or has no readable image; a bad ``resolution``,
            ``channels`` or ``fit``.
    """
    _check_batch_size(batch_size)
    real_path, fake_path = Path(real).expanduser(), Path(fake).expanduser()
    size = read_size(fake_path, resolution, channels, fit)
    workers = workers or os.cpu_count() or 1
    device = resolve_device(device)
    groups = _group(build_metrics(metrics, **metric_options), device)
    cache = StatsCache(cache_dir) if use_cache else None
    common = (groups, size, channels, fit, batch_size, device, workers, progress)
    with torch.inference_mode():
        real_stats = _folder_statistics(real_path, *common, cache=cache, real=True)
        fake_stats = _folder_statistics(fake_path, *common, cache=None, real=False)
        return _compute(groups, real_stats, fake_stats, seed)
