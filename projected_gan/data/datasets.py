"""The two kinds of dataset: decoded images (in memory or mapped) and images decoded on the fly.

:class:`ImageDataset` holds ``images``, a uint8 tensor ``(N, C, H, W)``: in memory when made
from a tensor, or mapped from the decoded cache by
:func:`~projected_gan.data.load.load_image_dataset`. :class:`StreamingDataset` has no
``images``: its batches are decoded from the folder or zip in ``DataLoader`` workers. Both have
``labels``, ``class_names``, ``fingerprint``, ``size`` ``(H, W)``, ``channels`` (1 to
:data:`~projected_gan.data.spec.MAX_CHANNELS`, RGB first) and :meth:`read_images`, which the
metrics use.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from projected_gan.atomic import atomic_write
from projected_gan.cache import cache_dir
from projected_gan.data.files import DataError, DataWarning
from projected_gan.data.spec import MAX_CHANNELS, DataSpec
from projected_gan.data.stream import MemberReader, StreamedBatch
from projected_gan.sizes import Size

__all__ = ["GPU_CACHE_BYTES", "STREAM_METRIC_REALS", "ImageDataset", "StreamingDataset"]

GPU_CACHE_BYTES = 2 * 1024**3
STREAM_METRIC_REALS = 50_000  # reals a streaming dataset's metrics decode (a fixed random subset)
_REPORTED = 5  # unreadable files a streaming dataset names one by one; then one summary line


class _Labelled:
    """What both kinds of dataset share: labels, class names, where they came from."""

    labels: torch.Tensor | None
    class_names: list[str]
    fingerprint: str
    source: str
    skipped: list[str]
    # What load_image_dataset loaded, to load it again (None: made in memory).
    spec: DataSpec | None
    size: Size  # (height, width)
    channels: int

    def __len__(self) -> int:
        raise NotImplementedError

    def _set_labels(
        self, labels: torch.Tensor | None, class_names: Sequence[str] | None, n: int
    ) -> None:
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
        self.labels = labels
        self.class_names = [str(s) for s in class_names or ()] if labels is not None else []

    # Where the labels came from when loaded from files: "dataset.json" or "folders".
    labels_from = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def label_distribution(self) -> torch.Tensor:
        """Class frequencies, float32 ``(num_classes,)`` summing to 1 (to draw fake labels)."""
        if self.labels is None:
            raise DataError("label_distribution: this dataset has no labels", field="labels")
        counts = torch.bincount(self.labels, minlength=self.num_classes).float()
        return counts / counts.sum()

    def __repr__(self) -> str:
        classes = f", {self.num_classes} classes" if self.labels is not None else ""
        h, w = self.size
        return (
            f"{type(self).__name__}({len(self)} images, {self.channels}x{h}x{w}{classes}, "
            f"source={self.source!r})"
        )


class ImageDataset(_Labelled):
    """Decoded images: ``images`` uint8 ``(N, C, H, W)`` in [0, 255], CPU, contiguous; any
    ``H`` and ``W``, 1 to 16 channels (1 luma, 2 luma + alpha, 3 RGB, 4 RGBA, more: RGB first).

    Made from a tensor, the images are in this process's memory. From
    :func:`~projected_gan.data.load.load_image_dataset` they are usually a copy-on-write map of
    the decoded cache file (``mapped`` is True): their pages live in the page cache, shared by
    every process on the node, and nothing in this library writes into them (a write would
    stay private to the process, never reaching the file).

    ``labels`` is int64 ``(N,)`` with values in ``[0, num_classes)``, or None when unlabelled
    (then ``num_classes == 0``); ``class_names[k]`` is the name of class ``k``.
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
        mapped: bool = False,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(
                f"images: expected a uint8 tensor (N, C, H, W), got {_what(images)}", field="images"
            )
        n, c, h, w = images.shape
        if not 1 <= c <= MAX_CHANNELS or n == 0 or h == 0 or w == 0:
            raise DataError(
                f"images: expected N >= 1 images with 1 to {MAX_CHANNELS} channels, got shape "
                f"{tuple(images.shape)}",
                field="images",
            )
        self._set_labels(labels, class_names, n)
        self.images = images.cpu().contiguous()
        self.mapped = mapped
        self.fingerprint = fingerprint
        self.source = source
        self.skipped = list(skipped)
        self.spec = None
        self.cache_file: Path | None = None  # the mapped cache file, when there is one
        self.cache_built = False  # whether this load decoded it into the cache (else found it)
        self.upscaled = 0  # images smaller than the size, enlarged (loaded from files)

    @property
    def size(self) -> Size:
        """``(height, width)`` of the images."""
        return (int(self.images.shape[2]), int(self.images.shape[3]))

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return self.images.shape[0]

    def read_images(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 ``(k, C, H, W)``: the images ``indices`` (int64 ``(k,)``), in that order."""
        return self.images.index_select(0, indices.cpu())


class StreamingDataset(_Labelled):
    """Images decoded on the fly from a folder or zip: nothing decoded is kept or cached.

    :class:`~projected_gan.data.InfiniteBatches` decodes each batch in ``workers``
    ``DataLoader`` worker processes; :meth:`read_images` decodes with ``workers`` threads. The
    metrics' real statistics use a fixed random subset of ``metric_reals`` images (default
    ``min(N, 50,000)``), decoded once and cached as statistics. An unreadable file is replaced
    by the next readable one (reported), or is an error with ``strict``
    (:mod:`projected_gan.data.stream`).
    """

    def __init__(
        self,
        reader: MemberReader,
        *,
        class_names: Sequence[str] | None = None,
        fingerprint: str = "",
        source: str = "",
        workers: int = 2,
    ) -> None:
        self.reader = reader
        self._set_labels(reader.labels, class_names, len(reader))
        reader.labels = self.labels
        self.workers = workers
        self.fingerprint = fingerprint
        self.source = source or str(reader.source.location)
        self.skipped = []
        self.spec = None
        self.metric_reals = min(len(reader), STREAM_METRIC_REALS)

    @property
    def size(self) -> Size:
        """``(height, width)`` of the images."""
        return self.reader.size

    @property
    def channels(self) -> int:
        return self.reader.channels

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def images(self) -> torch.Tensor:
        raise DataError(
            "this dataset is decoded on the fly (storage 'stream') and holds no decoded images; "
            "use read_images(indices), or load it with storage='cache'",
            field="images",
        )

    def read_images(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 ``(k, C, H, W)``: the images ``indices``, decoded now (unreadable files
        replaced as in training)."""
        batch: StreamedBatch = self.reader.read(indices, threads=self.workers)
        self.report(batch.skipped)
        return batch.images

    def report(self, skipped: list[tuple[str, str]]) -> None:
        """Warn about unreadable files met while decoding: the first few by name, once each."""
        for name, why in skipped:
            if name in self.skipped:
                continue
            self.skipped.append(name)
            if len(self.skipped) <= _REPORTED:
                warnings.warn(
                    f"unreadable file {name} in {self.source} ({why}); the next readable image "
                    f"stands in for it",
                    DataWarning,
                    stacklevel=3,
                )
            elif len(self.skipped) == _REPORTED + 1:
                warnings.warn(
                    f"more unreadable files in {self.source}; not naming the rest",
                    DataWarning,
                    stacklevel=3,
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


def _check_int(name: str, value: object, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataError(f"{name}: expected an integer >= {low}, got {value!r}", field=name)
    return int(value)
