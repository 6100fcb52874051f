"""Training data: a folder or zip of photos -> a cached uint8 tensor -> endless batches.

    >>> ds = load_image_dataset(default_dataset_path(), 64, use_labels=True)  # shipped flowers
    >>> ds.images.shape, ds.images.dtype, ds.class_names[:2]
    (torch.Size([500, 3, 64, 64]), torch.uint8, ['daisy', 'dandelion'])
    >>> images, labels = next(InfiniteBatches(ds, 8, mirror=True))  # uint8 (8, 3, 64, 64)
    >>> x = to_float(images)  # float32 in [-1, 1]

Each image is decoded once (a thread pool), converted to RGB, centre-cropped to a square and
resized with an antialiased filter; the result is cached under ``$PROJECTED_GAN_CACHE`` (default
``~/.cache/projected_gan``), keyed by a cheap fingerprint of the source, so later runs start in
well under a second. File handling lives in :mod:`projected_gan.data.files`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from projected_gan.atomic import atomic_write
from projected_gan.cache import cache_dir
from projected_gan.data.files import (
    CACHE_FORMAT,
    IMAGE_EXTENSIONS,
    DataError,
    DataWarning,
    Source,
    cache_file,
    decode_all,
    default_cache_dir,
    fingerprint,
    open_source,
    prepare_image,
    read_cache,
    unreadable_message,
    write_cache,
)
from projected_gan.images import to_float

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "DataWarning",
    "ImageDataset",
    "default_cache_dir",
    "default_dataset_path",
    "load_image_dataset",
    "prepare_image",
    "to_float",
]

_SHOW = 5  # how many example paths a summary warning names
GPU_CACHE_BYTES = 2 * 1024**3


# --------------------------------------------------------------------------------------------
# The dataset


class ImageDataset:
    """Decoded images in memory: ``images`` uint8 ``(N, C, R, R)`` in [0, 255], CPU, contiguous.

    ``labels`` is int64 ``(N,)`` with values in ``[0, num_classes)``, or None when unlabelled
    (then ``num_classes == 0``); ``class_names[k]`` is the folder name of class ``k``.
    Construct one directly from any uint8 tensor to train on data already in memory.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        class_names: Sequence[str] | None = None,
        fingerprint: str = "",
        source: str = "<memory>",
        skipped: Sequence[str] = (),
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(
                f"images: expected a uint8 tensor (N, C, R, R), got {_what(images)}", field="images"
            )
        n, c, h, w = images.shape
        if h != w or c not in (1, 3) or n == 0:
            raise DataError(
                f"images: expected N >= 1 square images with 1 or 3 channels, got shape "
                f"{tuple(images.shape)}",
                field="images",
            )
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
                raise DataError(
                    f"labels: expected an int64 tensor ({n},), got {_what(labels)}", field="labels"
                )
            if labels.shape != (n,):
                raise DataError(
                    f"labels: expected shape ({n},), got {tuple(labels.shape)}", field="labels"
                )
            if class_names is None:
                class_names = [str(k) for k in range(int(labels.max()) + 1)]
            if int(labels.min()) < 0 or int(labels.max()) >= len(class_names):
                raise DataError(
                    f"labels: values must lie in [0, {len(class_names)})", field="labels"
                )
            labels = labels.cpu().contiguous()
        self.images = images.cpu().contiguous()
        self.labels = labels
        self.class_names = [str(s) for s in class_names or ()] if labels is not None else []
        self.fingerprint = fingerprint
        self.source = source
        self.skipped = list(skipped)
        # The load_image_dataset arguments that give this dataset again (None: made in memory).
        self.load_args: dict[str, Any] | None = None

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.images.shape[0]

    def label_distribution(self) -> torch.Tensor:
        """Class frequencies, float32 ``(num_classes,)`` summing to 1 (to draw fake labels)."""
        if self.labels is None:
            raise DataError("label_distribution: this dataset has no labels", field="labels")
        counts = torch.bincount(self.labels, minlength=self.num_classes).float()
        return counts / counts.sum()

    def __repr__(self) -> str:
        classes = f", {self.num_classes} classes" if self.labels is not None else ""
        return (
            f"ImageDataset({len(self)} images, {self.channels}x{self.resolution}x"
            f"{self.resolution}{classes}, source={self.source!r})"
        )


def _what(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def default_dataset_path() -> Path:
    """``flowers64.zip`` in the package: 500 CC-BY 2.0 flower photos, 64x64, 5 class folders."""
    asset = resources.files("projected_gan") / "assets" / "flowers64.zip"
    if isinstance(asset, Path):
        return asset
    out = cache_dir("assets") / "flowers64.zip"  # package inside a zip: copy once
    if not out.exists():
        with atomic_write(out) as f:
            f.write(asset.read_bytes())
    return out


# --------------------------------------------------------------------------------------------
# Loading


def load_image_dataset(
    path: str | os.PathLike[str],
    resolution: int,
    *,
    use_labels: bool = False,
    channels: int = 3,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: bool = True,
    strict: bool = False,
    min_images: int = 1,
    max_images: int | None = None,
    workers: int | None = None,
) -> ImageDataset:
    """Load a folder (searched recursively) or a zip of images as one uint8 tensor.

    Args:
        path: folder or ``.zip``; files ending in .jpg/.jpeg/.png/.webp/.bmp (any case) are
            used, hidden files and folders (``.name``, ``__MACOSX``) are ignored.
        resolution: side ``R`` of the square output images.
        use_labels: label each image by its first-level sub-folder (classes sorted by name).
        channels: 3 (RGB) or 1 (luma).
        cache_dir: where decoded datasets are cached (default :func:`default_cache_dir`).
        cache: False neither reads nor writes the cache.
        strict: fail on the first unreadable file instead of skipping it.
        min_images: fail if fewer readable images remain.
        max_images: keep only the first ``max_images`` readable images in sorted path order.
        workers: decoding threads (default: the number of CPU cores).

    Returns:
        :class:`ImageDataset` with ``images`` uint8 ``(N, channels, R, R)``.

    Raises:
        DataError: missing or empty path, no images, labels without class folders, fewer than
            ``min_images`` readable images, or (``strict``) the first unreadable file.
    """
    resolution = _check_int("resolution", resolution, low=1)
    min_images = _check_int("min_images", min_images, low=1)
    if max_images is not None:
        max_images = _check_int("max_images", max_images, low=1)
    if channels not in (1, 3):
        raise DataError(f"channels: expected 1 or 3, got {channels!r}", field="channels")
    workers = _check_int("workers", (os.cpu_count() or 1) if workers is None else workers, low=1)

    path = Path(path).expanduser()
    source = open_source(path)
    if strict and source.problems:  # an unreadable sub-folder: fail before decoding anything
        raise DataError(unreadable_message(*source.problems[0], path))
    class_names = _class_names(source, path) if use_labels else []
    key = {
        "format": CACHE_FORMAT,
        "fingerprint": fingerprint(source),
        "resolution": resolution,
        "channels": channels,
        "use_labels": use_labels,
        "max_images": max_images,
    }
    file = cache_file(Path(cache_dir or default_cache_dir()), path, key) if cache else None
    decoded = read_cache(file, key) if file is not None else None
    if decoded is None:
        try:
            decoded = decode_all(
                source,
                resolution,
                channels,
                workers=workers,
                strict=strict,
                max_images=max_images,
            )
        finally:
            source.close()
        if file is not None and decoded.names:
            write_cache(file, key, decoded)

    skipped = [*source.problems, *decoded.skipped]
    if skipped and strict:
        raise DataError(unreadable_message(*skipped[0], path))
    if skipped:
        named = [f"{name} ({why})" for name, why in skipped]
        warnings.warn(
            f"skipped {len(skipped)} unreadable file(s) in {path}: {_examples(named)}",
            DataWarning,
            stacklevel=2,
        )
    if decoded.upscaled:
        warnings.warn(
            f"{decoded.upscaled} image(s) in {path} are smaller than {resolution}px and were "
            f"upscaled",
            DataWarning,
            stacklevel=2,
        )
    if len(decoded.names) < min_images:
        raise DataError(
            f"only {len(decoded.names)} readable image(s) in {path} ({len(skipped)} skipped); "
            f"min_images={min_images} are needed",
            field="min_images",
        )
    labels = None
    if use_labels:
        index = {c: k for k, c in enumerate(class_names)}
        labels = torch.tensor([index[n.partition("/")[0]] for n in decoded.names])
    dataset = ImageDataset(
        torch.from_numpy(decoded.images),
        labels,
        class_names=class_names,
        fingerprint=key["fingerprint"],
        source=str(path.resolve()),
        skipped=[name for name, _ in skipped],
    )
    dataset.load_args = {
        "path": str(path.resolve()),
        "resolution": resolution,
        "use_labels": use_labels,
        "channels": channels,
        "max_images": max_images,
    }
    return dataset


def _check_int(name: str, value: object, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataError(f"{name}: expected an integer >= {low}, got {value!r}", field=name)
    return int(value)


def _examples(items: Sequence[str]) -> str:
    more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def _class_names(source: Source, path: Path) -> list[str]:
    loose = [m.name for m in source.members if m.folder is None]
    if loose:
        raise DataError(
            f"use_labels needs every image inside a class sub-folder of {path}, but "
            f"{len(loose)} sit directly in it (e.g. {_examples(loose)})",
            field="use_labels",
        )
    names = sorted({m.folder for m in source.members if m.folder is not None})
    if len(names) < 2:
        raise DataError(
            f"use_labels needs at least two class sub-folders in {path}, found {names}; point "
            f"the path at the folder that holds the class folders, or turn labels off",
            field="use_labels",
        )
    return names
