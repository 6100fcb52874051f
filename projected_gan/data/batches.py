"""Endless, deterministic, resumable batches of a dataset on a device."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

from projected_gan.data.datasets import GPU_CACHE_BYTES, ImageDataset, StreamingDataset, _check_int
from projected_gan.data.files import DataError
from projected_gan.data.stream import BatchRequest, StreamedBatch

__all__ = ["InfiniteBatches"]


class _Order:
    """The sample order and a cursor ``(epoch, position)`` in it (see :class:`InfiniteBatches`)."""

    def __init__(
        self, m: int, seed: int, rank: int, world: int, batch: int, drop_last: bool
    ) -> None:
        self.m, self.seed, self.rank, self.world = m, seed, rank, world
        self.need, self.drop_last = batch * world, drop_last
        self.device: torch.device | None = None  # where the orders live (resident batches)
        self.cursor = (0, 0)
        self._orders: dict[int, torch.Tensor] = {}

    def order(self, epoch: int) -> torch.Tensor:
        if epoch not in self._orders:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.m, generator=g)
            if self.device is not None and self.device.type != "cpu":
                order = order.pin_memory() if self.device.type == "cuda" else order
                order = order.to(self.device, non_blocking=True)
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = order
        return self._orders[epoch]

    def next_indices(self) -> torch.Tensor:
        """This rank's indices in ``[0, M)`` for the next step; advances the cursor."""
        epoch, pos = self.cursor
        need = self.need
        if self.drop_last and pos + need > self.m:
            epoch, pos = epoch + 1, 0
        pieces = []
        while need:
            if pos >= self.m:
                epoch, pos = epoch + 1, 0
            take = min(need, self.m - pos)
            pieces.append(self.order(epoch)[pos : pos + take])
            pos, need = pos + take, need - take
        self.cursor = (epoch, pos)
        steps = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        return steps[self.rank :: self.world]


class _Requests:
    """The ``DataLoader`` sampler of a streaming dataset: endless :class:`BatchRequest`s from a
    cursor. It runs ahead of training (workers decode several batches at once), so each
    request carries its own cursor back with the images."""

    def __init__(self, order: _Order, n: int, mirror: bool) -> None:
        self.order, self.n, self.mirror = order, n, mirror

    def __iter__(self) -> Iterator[BatchRequest]:
        while True:
            idx = self.order.next_indices()
            flip = idx >= self.n if self.mirror else None
            base = idx - self.n * flip if flip is not None else idx
            yield BatchRequest(base, flip, self.order.cursor)


class InfiniteBatches:
    """Endless, deterministic, resumable batches: ``next(it) -> (images, labels)``.

    ``images`` is uint8 ``(batch_size, C, H, W)`` on ``device``; ``labels`` int64
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

    Memory. An :class:`ImageDataset` (in memory or mapped from the cache) is kept whole on
    ``device`` when it takes at most ``gpu_cache_bytes`` (default 2 GiB); otherwise each batch
    is gathered on the host into pinned memory, on CUDA by a background thread one batch ahead
    (``gather_ahead``; so reading the map overlaps with the step), and copied asynchronously,
    one batch ahead on a side CUDA stream. A :class:`StreamingDataset` is decoded batch by batch in
    ``dataset.workers`` ``DataLoader`` worker processes (this rank's samples only, several
    batches ahead), then copied the same way. Flips run on the device as one ``torch.where``.

    Resume. :meth:`state_dict` gives ``{"epoch", "position"}`` (position in the global order of
    that epoch) after the last batch returned; a new iterator given it via
    :meth:`load_state_dict` continues with exactly the next batch, whichever kind of dataset.
    """

    def __init__(
        self,
        dataset: ImageDataset | StreamingDataset,
        batch_size: int,
        *,
        seed: int = 0,
        mirror: bool = False,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        gpu_cache_bytes: int = GPU_CACHE_BYTES,
        gather_ahead: bool | None = None,
    ) -> None:
        self.batch_size = _check_int("batch_size", batch_size, low=1)
        self.world_size = _check_int("world_size", world_size, low=1)
        self.rank = _check_int("rank", rank, low=0)
        if self.rank >= self.world_size:
            raise DataError(
                f"rank: expected 0 <= rank < world_size={world_size}, got {rank}", field="rank"
            )
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
                f"drop_last=False",
                field="batch_size",
            )
        self.dataset = dataset  # its ``spec`` says how to load it again (None: in memory)
        cuda = self.device.type == "cuda"
        self._stream_data = dataset if isinstance(dataset, StreamingDataset) else None
        self._loader: Iterator[StreamedBatch] | None = None
        self._pool: ThreadPoolExecutor | None = None  # gathers host batches ahead
        self._ahead: tuple | None = None  # (future images, labels, flip, cursor) of the next
        if self._stream_data is not None:
            self.resident = False
            self._images = self._labels = None
        else:
            images, labels = dataset.images, dataset.labels
            nbytes = images.numel() + (0 if labels is None else labels.numel() * 8)
            self.resident = nbytes <= gpu_cache_bytes
            if self.resident:  # index straight on the device
                self._images = images.to(self.device)
                self._labels = None if labels is None else labels.to(self.device)
            else:  # gather on the host, copy a batch at a time
                self._images, self._labels = images, labels
        self._pin = cuda and not self.resident
        # CUDA's pinned buffers come from torch's caching host allocator; on the CPU, buffers
        # handed between threads fragment the C heap, and a CPU step is slow anyway.
        self._thread = self._pin if gather_ahead is None else bool(gather_ahead)
        self._stream = torch.cuda.Stream(self.device) if self._pin else None
        self._order = self._new_order((0, 0))
        self._state = (0, 0)  # (epoch, position) after the last batch returned
        self._pending: tuple | None = None  # the prefetched batch (side stream only)

    @property
    def global_batch(self) -> int:
        """Samples per step over all ranks: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    @property
    def num_images(self) -> int:
        """Images in the dataset, before mirroring."""
        return self._n

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
            raise DataError(
                f"state: expected integers 'epoch' and 'position', got {state!r}", field="state"
            )
        if epoch < 0 or not 0 <= position <= self._m:
            raise DataError(
                f"state: position must lie in [0, {self._m}], got {state!r}", field="state"
            )
        self.close()  # a streaming loader ran ahead of the old position
        self._order = self._new_order((epoch, position))
        self._state = (epoch, position)
        self._pending = None

    def close(self) -> None:
        """Stop the decoding workers of a streaming dataset and drop the batch gathered ahead
        (both start again when needed)."""
        self._loader = None
        self._ahead = None

    # -- internals -----------------------------------------------------------------------------

    def _new_order(self, cursor: tuple[int, int]) -> _Order:
        order = _Order(
            self._m, self.seed, self.rank, self.world_size, self.batch_size, self.drop_last
        )
        order.cursor = cursor
        if self.resident:
            order.device = self.device
        return order

    def _prepare(self) -> tuple:
        if self._stream_data is not None:
            host, labels, flip, cursor = self._next_streamed()
        elif self.resident:
            idx = self._order.next_indices()
            flip = idx >= self._n if self.mirror else None
            base = idx - self._n * flip if flip is not None else idx
            images = self._images.index_select(0, base)
            labels = None if self._labels is None else self._labels.index_select(0, base)
            return images, labels, flip, self._order.cursor
        elif self._thread:
            if self._ahead is None:
                self._ahead = self._gather_next()
            (gathered, labels, flip, cursor), self._ahead = self._ahead, self._gather_next()
            host = gathered.result()
        else:
            gathered, labels, flip, cursor = self._gather_next(now=True)
            host = gathered
        side = contextlib.nullcontext() if self._stream is None else torch.cuda.stream(self._stream)
        with side:
            images, labels, flip = (
                None if t is None else t.to(self.device, non_blocking=self._pin)
                for t in (host, labels, flip)
            )
        return images, labels, flip, cursor

    def _gather_next(self, now: bool = False) -> tuple:
        """Gather the next batch from the (mapped) host images: ``now``, or (a future) in a
        background thread, so that page faults and copies overlap with the step that uses the
        batch before it. The order is drawn here, on the caller's thread, so the batches stay
        deterministic."""
        idx = self._order.next_indices()
        flip = idx >= self._n if self.mirror else None
        base = idx - self._n * flip if flip is not None else idx
        labels = None if self._labels is None else self._labels.index_select(0, base)
        if self._pin:
            labels, flip = (None if t is None else t.pin_memory() for t in (labels, flip))
        host = torch.empty(
            (len(base), *self._images.shape[1:]), dtype=torch.uint8, pin_memory=self._pin
        )
        if now:
            return (
                torch.index_select(self._images, 0, base, out=host),
                labels,
                flip,
                self._order.cursor,
            )
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="gather")
        future = self._pool.submit(torch.index_select, self._images, 0, base, out=host)
        return future, labels, flip, self._order.cursor

    def _next_streamed(self) -> tuple:
        if self._loader is None:
            data = self._stream_data
            # The sampler gets its own copy of the order: it runs ahead of the batches returned.
            requests = _Requests(self._new_order(self._state), self._n, self.mirror)
            self._loader = iter(
                torch.utils.data.DataLoader(
                    data.reader,
                    batch_size=None,  # each request is a whole batch, decoded by one worker
                    sampler=requests,
                    num_workers=data.workers,
                    pin_memory=self._pin,
                    prefetch_factor=2 if data.workers else None,
                )
            )
        batch = next(self._loader)
        if batch.error is not None:
            raise DataError(batch.error)
        self._stream_data.report(batch.skipped)
        return batch.images, batch.labels, batch.flip, batch.cursor
