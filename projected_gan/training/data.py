"""Training data: a folder or zip of photos -> a cached uint8 tensor -> endless batches.

    >>> ds = load_image_dataset(default_dataset_path(), 64, use_labels=True)  # shipped flowers
    >>> ds.images.shape, ds.images.dtype, ds.class_names[:2]
    (torch.Size([500, 3, 64, 64]), torch.uint8, ['daisy', 'dandelion'])
    >>> images, labels = next(InfiniteBatches(ds, 8, mirror=True))  # uint8 (8, 3, 64, 64)
    >>> x = to_float(images)  # float32 in [-1, 1]

Each image is decoded once (a thread pool), converted to RGB, centre-cropped to a square and
resized with an antialiased filter; the result is cached under ``$PROJECTED_GAN_CACHE`` (default
``~/.cache/projected_gan``), keyed by a cheap fingerprint of the source, so later runs start in
well under a second. File handling lives in :mod:`projected_gan.training.image_files`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from projected_gan.training.atomic import atomic_write
from projected_gan.training.image_files import (
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

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "DataWarning",
    "ImageDataset",
    "InfiniteBatches",
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
            raise DataError(f"images: expected a uint8 tensor (N, C, R, R), got {_what(images)}")
        n, c, h, w = images.shape
        if h != w or c not in (1, 3) or n == 0:
            raise DataError(
                f"images: expected N >= 1 square images with 1 or 3 channels, got shape "
                f"{tuple(images.shape)}"
            )
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
                raise DataError(f"labels: expected an int64 tensor ({n},), got {_what(labels)}")
            if labels.shape != (n,):
                raise DataError(f"labels: expected shape ({n},), got {tuple(labels.shape)}")
            if class_names is None:
                class_names = [str(k) for k in range(int(labels.max()) + 1)]
            if int(labels.min()) < 0 or int(labels.max()) >= len(class_names):
                raise DataError(f"labels: values must lie in [0, {len(class_names)})")
            labels = labels.cpu().contiguous()
        self.images = images.cpu().contiguous()
        self.labels = labels
        self.class_names = [str(s) for s in class_names or ()] if labels is not None else []
        self.fingerprint = fingerprint
        self.source = source
        self.skipped = list(skipped)

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
            raise DataError("label_distribution: this dataset has no labels")
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


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images in [0, 255] -> ``dtype`` in [-1, 1] (``x / 127.5 - 1``); shape, device and
    memory format are kept."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float: images must be uint8, got {images.dtype}")
    return images.to(dtype) / 127.5 - 1


def default_dataset_path() -> Path:
    """``flowers64.zip`` in the package: 500 CC-BY 2.0 flower photos, 64x64, 5 class folders."""
    asset = resources.files("projected_gan") / "assets" / "flowers64.zip"
    if isinstance(asset, Path):
        return asset
    out = default_cache_dir() / "assets" / "flowers64.zip"  # package inside a zip: copy once
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
        raise DataError(f"channels: expected 1 or 3, got {channels!r}")
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
            f"min_images={min_images} are needed"
        )
    labels = None
    if use_labels:
        index = {c: k for k, c in enumerate(class_names)}
        labels = torch.tensor([index[n.partition("/")[0]] for n in decoded.names])
    return ImageDataset(
        torch.from_numpy(decoded.images),
        labels,
        class_names=class_names,
        fingerprint=key["fingerprint"],
        source=str(path.resolve()),
        skipped=[name for name, _ in skipped],
    )


def _check_int(name: str, value: object, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _examples(items: Sequence[str]) -> str:
    more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def _class_names(source: Source, path: Path) -> list[str]:
    loose = [m.name for m in source.members if m.folder is None]
    if loose:
        raise DataError(
            f"use_labels needs every image inside a class sub-folder of {path}, but "
            f"{len(loose)} sit directly in it (e.g. {_examples(loose)})"
        )
    names = sorted({m.folder for m in source.members if m.folder is not None})
    if len(names) < 2:
        raise DataError(
            f"use_labels needs at least two class sub-folders in {path}, found {names}; point "
            f"the path at the folder that holds the class folders, or turn labels off"
        )
    return names


# --------------------------------------------------------------------------------------------
# Batches


class InfiniteBatches:
    """Endless, deterministic, resumable batches: ``next(it) -> (images, labels)``.

    ``images`` is uint8 ``(batch_size, C, R, R)`` on ``device``; ``labels`` int64
    ``(batch_size,)`` on ``device``, or None for an unlabelled dataset.

    Order. Epoch ``e`` visits ``torch.randperm(M, generator=manual_seed(seed + e))``, where
    ``M = N``, or ``2N`` with ``mirror`` (index ``i >= N`` is the x-flipped copy of ``i - N``,
    as the official ``--mirror`` doubles the dataset). The order is cut into *global batches*
    of ``world_size * batch_size`` consecutive indices, and rank ``r`` takes elements
    ``r, r + W, r + 2W, ...`` of each global batch. So ranks see disjoint samples, and together
    exactly the batch that a single process with ``batch_size * W`` sees at the same step:
    ``global[r::W] == rank_r_batch``. Every rank must get the same ``seed``.

    ``drop_last=True`` drops each epoch's tail shorter than a global batch; ``False`` completes
    it from the next epoch, so no sample is dropped and every batch is full.

    Memory. The whole uint8 dataset is kept on ``device`` when it takes at most
    ``gpu_cache_bytes`` (default 2 GiB); otherwise each batch is gathered on the host into
    pinned memory and copied asynchronously, one batch ahead on a side CUDA stream. Flips run
    on the device as one ``torch.where`` over the batch.

    Resume. :meth:`state_dict` gives ``{"epoch", "position"}`` (position in the global order of
    that epoch) after the last batch returned; a new iterator given it via
    :meth:`load_state_dict` continues with exactly the next batch.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        seed: int = 0,
        mirror: bool = False,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        gpu_cache_bytes: int = GPU_CACHE_BYTES,
    ) -> None:
        self.batch_size = _check_int("batch_size", batch_size, low=1)
        self.world_size = _check_int("world_size", world_size, low=1)
        self.rank = _check_int("rank", rank, low=0)
        if self.rank >= self.world_size:
            raise DataError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
        self.seed = int(seed)
        self.mirror = bool(mirror)
        self.drop_last = bool(drop_last)
        self.device = torch.device(device)
        self._n = len(dataset)
        self._m = self._n * (2 if self.mirror else 1)
        if self.drop_last and self._m < self.global_batch:
            raise DataError(
                f"batch_size: the dataset has {self._m} samples{' with mirror' if mirror else ''},"
                f" fewer than one global batch of {self.global_batch}; lower the batch or pass "
                f"drop_last=False"
            )
        images, labels = dataset.images, dataset.labels
        nbytes = images.numel() + (0 if labels is None else labels.numel() * 8)
        self.resident = nbytes <= gpu_cache_bytes
        cuda = self.device.type == "cuda"
        if self.resident:  # index straight on the device
            self._images = images.to(self.device)
            self._labels = None if labels is None else labels.to(self.device)
        else:  # gather on the host, copy a batch at a time
            self._images, self._labels = images, labels
        self._pin = cuda and not self.resident
        self._stream = torch.cuda.Stream(self.device) if self._pin else None
        self._orders: dict[int, torch.Tensor] = {}
        self._cursor = (0, 0)  # (epoch, position) after the last batch prepared
        self._state = (0, 0)  # ... after the last batch returned
        self._pending: tuple | None = None  # the prefetched batch (side stream only)

    @property
    def global_batch(self) -> int:
        """Samples per step over all ranks: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    @property
    def epoch_size(self) -> int:
        """Samples per epoch: N, or 2N with mirror."""
        return self._m

    def __iter__(self) -> InfiniteBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        pending = self._pending if self._pending is not None else self._prepare()
        self._pending = None
        images, labels, flip, self._state = pending
        if self._stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self._stream)  # only this batch's copy is queued there so far
            for t in (images, labels, flip):
                if t is not None:
                    t.record_stream(current)
            self._pending = self._prepare()  # the next copy overlaps with this step's compute
        if flip is not None:
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        return images, labels

    def state_dict(self) -> dict[str, int]:
        """``{"epoch": e, "position": p}`` after the last batch returned."""
        return {"epoch": self._state[0], "position": self._state[1]}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after the batch that ``state`` was taken at."""
        epoch, position = state.get("epoch"), state.get("position")
        if not (isinstance(epoch, int) and isinstance(position, int)):
            raise DataError(f"state: expected integers 'epoch' and 'position', got {state!r}")
        if epoch < 0 or not 0 <= position <= self._m:
            raise DataError(f"state: position must lie in [0, {self._m}], got {state!r}")
        self._cursor = self._state = (epoch, position)
        self._pending = None

    # -- internals -----------------------------------------------------------------------------

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch not in self._orders:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self._m, generator=g)
            if self.resident and self.device.type != "cpu":
                order = order.pin_memory() if self.device.type == "cuda" else order
                order = order.to(self.device, non_blocking=True)
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = order
        return self._orders[epoch]

    def _next_indices(self) -> torch.Tensor:
        """This rank's indices in ``[0, M)`` for the next step; advances the cursor."""
        epoch, pos = self._cursor
        need = self.global_batch
        if self.drop_last and pos + need > self._m:
            epoch, pos = epoch + 1, 0
        pieces = []
        while need:
            if pos >= self._m:
                epoch, pos = epoch + 1, 0
            take = min(need, self._m - pos)
            pieces.append(self._order(epoch)[pos : pos + take])
            pos, need = pos + take, need - take
        self._cursor = (epoch, pos)
        steps = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        return steps[self.rank :: self.world_size]

    def _prepare(self) -> tuple:
        idx = self._next_indices()
        flip = idx >= self._n if self.mirror else None
        base = idx - self._n * flip if flip is not None else idx
        if self.resident:
            images = self._images.index_select(0, base)
            labels = None if self._labels is None else self._labels.index_select(0, base)
            return images, labels, flip, self._cursor
        shape = (len(base), *self._images.shape[1:])
        host = torch.empty(shape, dtype=torch.uint8, pin_memory=self._pin)
        torch.index_select(self._images, 0, base, out=host)
        extras = [None if self._labels is None else self._labels.index_select(0, base), flip]
        if self._pin:
            extras = [None if t is None else t.pin_memory() for t in extras]
        side = contextlib.nullcontext() if self._stream is None else torch.cuda.stream(self._stream)
        with side:
            images, labels, flip = (
                None if t is None else t.to(self.device, non_blocking=self._pin)
                for t in (host, *extras)
            )
        return images, labels, flip, self._cursor
