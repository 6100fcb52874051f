"""Decoding on the fly: images read from the folder or zip as they are needed, never cached.

For data whose decoded form would not fit the disk. :class:`MemberReader` decodes members by
index in whichever process holds it: ``DataLoader`` worker processes decode whole batches
(:class:`BatchRequest` in, :class:`StreamedBatch` out), and the metrics read their reals through
:meth:`MemberReader.read` with a thread pool.

An unreadable file cannot be dropped here (the number of images is fixed before anything is
decoded, so that the order and resume rules of the batches hold): it is replaced by the next
readable member in sorted order, with its label, and reported; with ``strict`` it is an error
naming the file.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from projected_gan.data.decode import decode_member, unreadable_message
from projected_gan.data.files import DataError, Source
from projected_gan.sizes import SizeLike, as_size

__all__ = ["MAX_SUBSTITUTES", "BatchRequest", "MemberReader", "StreamedBatch"]

MAX_SUBSTITUTES = 100  # readable neighbours tried for an unreadable file before giving up


@dataclass
class BatchRequest:
    """One batch to decode: member indices ``(B,)``, the flip flags ``(B,)`` or None, and the
    ``(epoch, position)`` cursor after this batch (handed back with the images)."""

    indices: torch.Tensor
    flip: torch.Tensor | None
    cursor: tuple[int, int]


@dataclass
class StreamedBatch:
    """A decoded batch: ``images`` uint8 ``(B, C, H, W)``, ``labels`` int64 ``(B,)`` or None,
    ``flip`` and ``cursor`` as requested, the unreadable files met (``(name, why)``), how many
    images were upscaled, and ``error`` (a strict run's first unreadable file) or None."""

    images: torch.Tensor
    labels: torch.Tensor | None
    flip: torch.Tensor | None
    cursor: tuple[int, int]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    upscaled: int = 0
    error: str | None = None

    def pin_memory(self) -> StreamedBatch:
        """The ``DataLoader``'s pin-memory thread calls this (``pin_memory=True`` on CUDA)."""
        for name in ("images", "labels", "flip"):
            t = getattr(self, name)
            if t is not None and t.numel():
                setattr(self, name, t.pin_memory())
        return self


class MemberReader(torch.utils.data.Dataset):
    """Decodes the members ``names`` of ``source`` by index: ``size`` ``(H, W)`` (or one side),
    ``channels``, fitted by ``fit`` (:func:`~projected_gan.data.decode.prepare_image`).

    ``labels`` (int64 ``(N,)`` or None) follow the images, substitutes included. Picklable, and
    safe to use from forked processes (each opens its own file handles).
    """

    def __init__(
        self,
        source: Source,
        names: list[str],
        size: SizeLike,
        channels: int,
        *,
        fit: str = "crop",
        labels: torch.Tensor | None = None,
        strict: bool = False,
    ) -> None:
        self.source = source
        self.names = list(names)
        self.size = as_size(size, "size")
        self.channels = channels
        self.fit = fit
        self.labels = labels
        self.strict = strict

    def __len__(self) -> int:
        return len(self.names)

    def decode(self, index: int) -> tuple[np.ndarray, int, list[tuple[str, str]], bool]:
        """``(image (C, H, W), index actually used, unreadable files met, upscaled)``."""
        skipped: list[tuple[str, str]] = []
        n = len(self.names)
        for k in range(min(n, MAX_SUBSTITUTES + 1)):
            j = (index + k) % n
            result = decode_member(self.source, self.names[j], self.size, self.channels, self.fit)
            if not isinstance(result, str):
                return result[0], j, skipped, result[1]
            if self.strict:
                raise DataError(unreadable_message(self.names[j], result, self.source.location))
            skipped.append((self.names[j], result))
        raise DataError(
            f"{len(skipped)} files in a row from {self.names[index]} on are unreadable in "
            f"{self.source.location}: {skipped[0][1]}"
        )

    def _batch(self, indices: list[int], threads: int = 1) -> StreamedBatch:
        out = np.empty((len(indices), self.channels, *self.size), dtype=np.uint8)
        if threads > 1 and len(indices) > 1:
            with ThreadPoolExecutor(min(threads, len(indices))) as pool:
                results = list(pool.map(self.decode, indices))
        else:
            results = [self.decode(i) for i in indices]
        used, skipped, upscaled = [], [], 0
        for row, (image, j, bad, up) in enumerate(results):
            out[row] = image
            used.append(j)
            skipped += bad
            upscaled += up
        labels = None if self.labels is None else self.labels[torch.tensor(used, dtype=torch.long)]
        return StreamedBatch(torch.from_numpy(out), labels, None, (0, 0), skipped, upscaled)

    def read(self, indices: torch.Tensor, threads: int = 1) -> StreamedBatch:
        """The images ``indices`` (in that order), decoded with ``threads`` threads."""
        return self._batch([int(i) for i in indices], threads)

    def __getitem__(self, request: BatchRequest) -> StreamedBatch:  # type: ignore[override]
        """A ``DataLoader`` worker's job: one whole batch (errors come back as ``error``, so
        that the training process raises them as one clear :class:`DataError`)."""
        try:
            batch = self._batch(request.indices.tolist())
        except DataError as e:
            empty = torch.empty(0, dtype=torch.uint8)
            return StreamedBatch(empty, None, request.flip, request.cursor, error=str(e))
        batch.flip, batch.cursor = request.flip, request.cursor
        return batch
