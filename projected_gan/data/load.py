"""Loading a folder or zip of images: the decoded cache (mapped), memory, or decoding on the fly.

    >>> ds = load_image_dataset(default_dataset_path(), 64, conditional=True)  # shipped flowers
    >>> ds.images.shape, ds.images.dtype, ds.class_names[:2]
    (torch.Size([500, 3, 64, 64]), torch.uint8, ['daisy', 'dandelion'])

Each image is decoded once (a thread pool), converted to the channels asked for, fitted to the
size (centre crop, pad or stretch), resized with an antialiased filter, and written window by
window into the decoded cache under ``$PROJECTED_GAN_CACHE`` (default
``~/.cache/projected_gan``), keyed by a cheap fingerprint of the source and the settings; later
loads map that file instead of reading it (:mod:`projected_gan.data.store`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from projected_gan.data.datasets import (
    ImageDataset,
    StreamingDataset,
    _check_int,
    default_dataset_path,
)
from projected_gan.data.decode import Decoded, check_read_settings, decode_all, unreadable_message
from projected_gan.data.files import (
    DataError,
    DataWarning,
    Source,
    default_cache_dir,
    fingerprint,
    open_source,
)
from projected_gan.data.labels import Labels, read_labels
from projected_gan.data.spec import DataSpec
from projected_gan.data.store import (
    CacheWriteError,
    build_cache,
    build_lock,
    cache_files,
    disk_room,
    open_cache,
)
from projected_gan.data.stream import MemberReader
from projected_gan.sizes import Size, SizeLike, as_size, size_text

__all__ = ["STORAGES", "Storage", "dataset_cache_files", "load_dataset", "load_image_dataset"]

Storage = Literal["auto", "cache", "stream"]
STORAGES: tuple[str, ...] = ("auto", "cache", "stream")
MEMORY_FALLBACK_BYTES = 512 * 2**20  # cache unwritable: data up to this size is kept in memory
_SHOW = 5  # how many example paths a summary warning names


def _cache_key(source: Source, size: Size, channels: int, fit: str, max_images: int | None) -> dict:
    h, w = size
    key = {
        "fingerprint": fingerprint(source),
        "resolution": h if h == w else [h, w],  # a list: the key must survive a JSON round trip
        "channels": channels,
        "max_images": max_images,
    }
    if fit != "crop":  # caches built before fits existed are crops: their key stays the same
        key["fit"] = fit
    return key


def dataset_cache_files(
    source: Source,
    path: Path,
    resolution: SizeLike,
    channels: int = 3,
    max_images: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    fit: str = "crop",
) -> Any:
    """The :class:`~projected_gan.data.store.CacheFiles` that loading ``path`` uses."""
    key = _cache_key(source, as_size(resolution), channels, fit, max_images)
    return cache_files(Path(cache_dir or default_cache_dir()), path, key)


def load_image_dataset(
    path: str | os.PathLike[str],
    resolution: SizeLike,
    *,
    fit: str = "crop",
    conditional: bool = False,
    channels: int = 3,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: bool = True,
    storage: Storage = "auto",
    strict: bool = False,
    min_images: int = 1,
    max_images: int | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> ImageDataset | StreamingDataset:
    """Load a folder (searched recursively) or a zip of images.

    Args:
        path: folder or ``.zip``; files ending in .jpg/.jpeg/.png/.webp/.bmp/.tif/.tiff and
            .npy (uint8 arrays ``(H, W)`` or ``(H, W, C)``, any channel count) are used (any
            case), hidden files and folders (``.name``, ``__MACOSX``) are ignored.
        resolution: size of the output images: one side ``R`` (square) or ``(H, W)``.
        fit: images of another aspect: ``"crop"`` the largest centred box of the output's
            aspect, ``"pad"`` the whole image with black (transparent) bars, ``"stretch"``
            the whole image to ``H x W`` (:func:`~projected_gan.data.decode.prepare_image`).
        conditional: label the images by ``dataset.json`` at the root of ``path`` (the official
            ``dataset_tool.py`` format), else by their first-level sub-folder (classes sorted
            by name); see :mod:`projected_gan.data.labels`.
        channels: 1 luma, 2 luma + alpha, 3 RGB (alpha composited on black), 4 RGBA; 5 to 16
            only from ``.npy`` arrays (whose channel count must be this). RGB channels first.
        cache_dir: where decoded datasets are cached (default :func:`default_cache_dir`).
        cache: False neither reads nor writes the cache: the images are decoded into memory.
        storage: ``"cache"``: decode once into the cache and map it (an
            :class:`ImageDataset`); ``"stream"``: decode on the fly in the batches' worker
            processes, nothing cached (a :class:`StreamingDataset`); ``"auto"``: the cache,
            unless it is not built yet and would not fit the free disk space.
        strict: fail on the first unreadable file instead of skipping it.
        min_images: fail if fewer readable images remain.
        max_images: keep only the first ``max_images`` readable images in sorted path order
            (streaming: the first ``max_images`` files).
        workers: decoding threads; streaming, ``DataLoader`` worker processes (default: the
            number of CPU cores).
        progress: show a progress bar while building the cache, whatever its size.

    Returns:
        :class:`ImageDataset` with ``images`` uint8 ``(N, channels, H, W)``, or a
        :class:`StreamingDataset` (``storage="stream"``, or ``"auto"`` on a disk too small).

    Raises:
        DataError: missing or empty path, no images, bad labels, fewer than ``min_images``
            readable images, or (``strict``) the first unreadable file.
    """
    if isinstance(resolution, np.integer):
        resolution = int(resolution)
    try:
        size = as_size(resolution)
    except ValueError as e:
        raise DataError(str(e), field="resolution") from None
    check_read_settings(channels, fit)
    min_images = _check_int("min_images", min_images, low=1)
    if max_images is not None:
        max_images = _check_int("max_images", max_images, low=1)
    if storage not in STORAGES:
        raise DataError(
            f"storage: expected one of {', '.join(STORAGES)}, got {storage!r}", field="storage"
        )
    workers = _check_int("workers", (os.cpu_count() or 1) if workers is None else workers, low=1)

    path = Path(path).expanduser()
    source = open_source(path)
    if strict and source.problems:  # an unreadable sub-folder: fail before decoding anything
        raise DataError(unreadable_message(*source.problems[0], path))
    labels = read_labels(source, path) if conditional else None
    key = _cache_key(source, size, channels, fit, max_images)
    # What this dataset is, in the spec's words (unvalidated: any resolution loads); a square
    # given as one side stays one int, as the spec keeps it.
    record = DataSpec.model_construct(
        path=str(path.resolve()),
        resolution=resolution if isinstance(resolution, int) else size,
        fit=fit,
        channels=channels,
        conditional=conditional,
        workers=workers,
        cache_dir=None if cache_dir is None else str(cache_dir),
        storage=storage,
        strict=strict,
        min_images=min_images,
        max_images=max_images,
    )
    count = len(source.members) if max_images is None else min(max_images, len(source.members))
    nbytes = count * channels * size[0] * size[1]
    decode = dict(fit=fit, workers=workers, strict=strict, max_images=max_images)

    def stream() -> StreamingDataset:
        if count < min_images:
            raise DataError(
                f"only {count} image file(s) in {path}; min_images={min_images} are needed",
                field="min_images",
            )
        return _streaming(source, path, key, fit, labels, count, workers, strict, record)

    if storage == "stream":
        return stream()
    decoded: Decoded | None = None
    files, built = None, False
    if cache:
        folder = Path(cache_dir or default_cache_dir())
        files = cache_files(folder, path, key)
        members = {m.name for m in source.members}  # a sidecar naming others is not trusted
        decoded = open_cache(files, key, warn=False, members=members)  # no lock, no waiting
        if decoded is None and storage == "auto" and not _fits(nbytes, folder):
            warnings.warn(
                f"the decoded images of {path} would take {nbytes / 1e9:.1f} GB, more than "
                f"{folder} has free ({disk_room(folder) / 1e9:.1f} GB): decoding them on the "
                f"fly instead (storage 'stream'); set the cache folder to a larger disk, or "
                f"storage 'cache' to insist",
                DataWarning,
                stacklevel=2,
            )
            return stream()
        if decoded is None:
            with build_lock(files):
                decoded = open_cache(files, key, members=members)  # built meanwhile elsewhere?
                if decoded is None:
                    try:
                        decoded = build_cache(
                            files,
                            key,
                            source,
                            progress=progress,
                            workers=workers,
                            strict=strict,
                            max_images=max_images,
                        )
                        built = True
                    except CacheWriteError as e:
                        if nbytes > MEMORY_FALLBACK_BYTES:
                            warnings.warn(f"{e}; decoding on the fly", DataWarning, stacklevel=2)
                            return stream()
                        warnings.warn(f"{e}; keeping it in memory", DataWarning, stacklevel=2)
    if decoded is None:
        decoded = decode_all(source, size, channels, **decode)
    source.close()
    dataset = _dataset(decoded, source, path, key, labels, strict, min_images, record)
    if dataset.mapped and files is not None:
        dataset.cache_file, dataset.cache_built = files.raw, built
    return dataset


def load_dataset(data: DataSpec, *, progress: bool = False) -> ImageDataset | StreamingDataset:
    """The dataset ``data`` describes (``path`` None: the shipped flowers64)."""
    return load_image_dataset(
        data.path or default_dataset_path(),
        data.resolution,
        fit=data.fit,
        conditional=data.conditional,
        channels=data.channels,
        cache_dir=data.cache_dir,
        storage=data.storage,
        strict=data.strict,
        min_images=data.min_images,
        max_images=data.max_images,
        workers=data.workers,
        progress=progress,
    )


def _fits(nbytes: int, folder: Path) -> bool:
    """Room for the cache and a margin (5 %, at least 1 GiB) on the disk of ``folder``."""
    return nbytes + max(nbytes // 20, 2**30) <= disk_room(folder)


def _dataset(
    decoded: Decoded,
    source: Source,
    path: Path,
    key: dict,
    labels: Labels | None,
    strict: bool,
    min_images: int,
    record: DataSpec,
) -> ImageDataset:
    skipped = [*source.problems, *decoded.skipped]
    if skipped and strict:
        raise DataError(unreadable_message(*skipped[0], path))
    if skipped:
        named = [f"{name} ({why})" for name, why in skipped]
        warnings.warn(
            f"skipped {len(skipped)} unreadable file(s) in {path}: {_examples(named)}",
            DataWarning,
            stacklevel=3,
        )
    if decoded.upscaled:
        warnings.warn(
            f"{decoded.upscaled} image(s) in {path} are smaller than "
            f"{size_text(key['resolution'])} (height x width) and were upscaled",
            DataWarning,
            stacklevel=3,
        )
    if len(decoded.names) < min_images:
        raise DataError(
            f"only {len(decoded.names)} readable image(s) in {path} ({len(skipped)} skipped); "
            f"min_images={min_images} are needed",
            field="min_images",
        )
    dataset = ImageDataset(
        torch.from_numpy(decoded.images),  # a writable (copy-on-write) map: no copy, no warning
        None if labels is None else torch.tensor([labels.of[n] for n in decoded.names]),
        class_names=None if labels is None else labels.class_names,
        fingerprint=key["fingerprint"],
        source=str(path.resolve()),
        skipped=[name for name, _ in skipped],
        mapped=isinstance(decoded.images, np.memmap),
    )
    dataset.spec = record
    dataset.upscaled = decoded.upscaled
    dataset.labels_from = "" if labels is None else labels.origin
    return dataset


def _streaming(
    source: Source,
    path: Path,
    key: dict,
    fit: str,
    labels: Labels | None,
    count: int,
    workers: int,
    strict: bool,
    record: DataSpec,
) -> StreamingDataset:
    if source.problems:
        named = [f"{name} ({why})" for name, why in source.problems]
        warnings.warn(
            f"skipped {len(named)} unreadable folder(s) in {path}: {_examples(named)}",
            DataWarning,
            stacklevel=3,
        )
    names = [m.name for m in source.members[:count]]
    reader = MemberReader(
        source,
        names,
        as_size(key["resolution"]),
        key["channels"],
        fit=fit,
        labels=None if labels is None else torch.tensor([labels.of[n] for n in names]),
        strict=strict,
    )
    dataset = StreamingDataset(
        reader,
        class_names=None if labels is None else labels.class_names,
        fingerprint=key["fingerprint"],
        source=str(path.resolve()),
        workers=workers,
    )
    dataset.spec = record
    dataset.labels_from = "" if labels is None else labels.origin
    return dataset


def _examples(items: Sequence[str]) -> str:
    more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more
