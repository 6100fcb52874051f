"""Evaluate a generator against a dataset: batched features, cached real statistics, metrics."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from projected_gan.data.spec import MAX_CHANNELS
from projected_gan.devices import resolve_device
from projected_gan.distributed import all_gather_rows, broadcast_object, is_active
from projected_gan.metrics.base import FeatureExtractor, Metric, build_metrics
from projected_gan.metrics.features import as_uint8_rgb
from projected_gan.metrics.stats import FeatureStats
from projected_gan.metrics.stats_cache import StatsCache, real_stats_key
from projected_gan.sizes import as_size, size_text

__all__ = [
    "GeneratorFn",
    "RealSet",
    "check_image_shape",
    "compare_images",
    "dataset_image_shape",
    "evaluate",
    "evaluate_real_split",
]

GeneratorFn = Callable[[int, "torch.Tensor | None"], torch.Tensor]
"""``generator_fn(n_batch, labels) -> (n_batch, C, H, W)`` float images in ~[-1, 1], with the
dataset's channels ``C`` and size ``(H, W)``."""


@dataclass
class _Group:
    """Metrics that share one feature extractor, hence one pass over each image set."""

    extractor: FeatureExtractor
    metrics: list[Metric] = field(default_factory=list)

    @property
    def max_items(self) -> int:
        return max(m.max_items for m in self.metrics)


def _group(metrics: list[Metric], device: torch.device) -> list[_Group]:
    groups: dict[str, _Group] = {}
    for metric in metrics:
        key = metric.extractor_key()
        if key not in groups:
            groups[key] = _Group(metric.extractor().to(device))
        groups[key].metrics.append(metric)
    return list(groups.values())


def _feature_pass(
    groups: list[_Group],
    batches: Iterable[torch.Tensor | None],
    device: torch.device,
    world: int = 1,
) -> list[FeatureStats]:
    """Stream uint8 batches through every group's extractor (float32: autocast is switched off).

    Distributed (``world > 1``, every rank calling): ``batches`` is the same global sequence on
    every rank, ``None`` where another rank embeds the batch (batch ``j`` is rank
    ``j % world``'s). Each round of ``world`` batches is embedded in parallel and gathered to
    rank 0, whose statistics see the features in the single-process order; the statistics of
    the other ranks stay empty.
    """
    stats = [FeatureStats(max_items=g.max_items) for g in groups]
    with torch.autocast(device_type=device.type, enabled=False):
        if world == 1:
            for batch in batches:
                for group, s in zip(groups, stats):
                    s.append(group.extractor(batch))
            return stats
        rank = torch.distributed.get_rank()
        for round_ in _rounds(batches, world):
            own = round_[rank]
            for group, s in zip(groups, stats):
                parts = all_gather_rows(None if own is None else group.extractor(own), device)
                for part in parts if rank == 0 else ():
                    s.append(part)
    return stats


def _rounds(items: Iterable[torch.Tensor | None], world: int) -> Iterator[list]:
    """``items`` in groups of ``world`` (the last one padded with None)."""
    round_: list = []
    for item in items:
        round_.append(item)
        if len(round_) == world:
            yield round_
            round_ = []
    if round_:
        yield round_ + [None] * (world - len(round_))


def _image_batches(
    images: torch.Tensor | RealSet,
    batch_size: int,
    device: torch.device,
    mirror: bool = False,
    rank: int = 0,
    world: int = 1,
) -> Iterator[torch.Tensor | None]:
    """Batches of ``images`` (each followed by its mirror image); None for other ranks' ones."""
    copies = 2 if mirror else 1
    for k, start in enumerate(range(0, images.shape[0], batch_size)):
        mine = [(k * copies + i) % world == rank for i in range(copies)]
        batch = None
        if any(mine):
            batch = as_uint8_rgb(images[start : start + batch_size]).to(device, non_blocking=True)
        yield batch if mine[0] else None
        if mirror:
            yield batch.flip(3) if mine[1] else None


def _compute(
    groups: list[_Group], real: list[FeatureStats], fake: list[FeatureStats], seed: int
) -> dict[str, float]:
    results: dict[str, float] = {}
    for group, r, f in zip(groups, real, fake):
        for metric in group.metrics:
            results.update(metric.compute(r, f, seed=seed))
    return results


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


def _as_images(images: Any, name: str) -> torch.Tensor:
    images = torch.as_tensor(images)
    if images.ndim != 4 or not 1 <= images.shape[1] <= MAX_CHANNELS or images.shape[0] < 2:
        raise ValueError(
            f"{name} must be (N >= 2, C, H, W) images with 1 to {MAX_CHANNELS} channels, got "
            f"{tuple(images.shape)}"
        )
    return images


def dataset_image_shape(dataset: Any) -> tuple[int, int, int]:
    """``(C, H, W)`` of a dataset's images: ``dataset.channels`` and ``dataset.size``."""
    h, w = as_size(dataset.size, "dataset.size")
    return (int(dataset.channels), h, w)


def check_image_shape(got: Sequence[int], expected: Sequence[int], what: str) -> None:
    """Raise one ValueError when images ``(C, H, W)`` ``got`` differ from the dataset's
    ``expected`` (``what`` names the producer, e.g. ``"the generator"``)."""
    got, expected = tuple(int(v) for v in got), tuple(int(v) for v in expected)
    if got != expected:
        raise ValueError(
            f"{what} makes {got[0]}-channel {size_text(got[1:])} images, the dataset holds "
            f"{expected[0]}-channel {size_text(expected[1:])} ones: evaluate a generator against "
            "data of its own size and channels (data.resolution, data.channels)"
        )


class RealSet:
    """The reals of ``dataset`` read in slices, ``reals[a:b]`` uint8 ``(b - a, C, H, W)``: all
    of them, or a fixed random subset of ``num_real`` (in index order).

    Through ``dataset.read_images(indices)`` where it has one (a mapped or streamed dataset: a
    batch is read or decoded only when its turn comes), else from the ``dataset.images``
    tensor. ``num_real`` defaults to ``dataset.metric_reals`` where present (a dataset decoded
    on the fly bounds what its metrics decode).
    """

    def __init__(self, dataset: Any, num_real: int | None) -> None:
        read = getattr(dataset, "read_images", None)
        if read is None:
            images = _as_images(dataset.images, "dataset.images")
            if images.dtype != torch.uint8:
                raise ValueError(f"dataset.images must be uint8, got {images.dtype}")
            read = images.__getitem__  # an index tensor: a copy of those rows only
            shape = tuple(images.shape)
        else:
            shape = (len(dataset), *dataset_image_shape(dataset))
            if shape[0] < 2:
                raise ValueError(f"dataset must hold at least 2 images, got {shape[0]}")
        n = shape[0]
        if num_real is None and getattr(dataset, "metric_reals", None) is not None:
            num_real = min(int(dataset.metric_reals), n)
        if num_real is not None and not (isinstance(num_real, int) and 2 <= num_real <= n):
            raise ValueError(f"num_real must be in [2, {n}], got {num_real!r}")
        if num_real is not None and num_real < n:
            subset = torch.randperm(n, generator=torch.Generator().manual_seed(0))
            self.index = subset[:num_real].sort().values
        else:
            self.index = torch.arange(n)
        self.shape = (len(self.index), *shape[1:])
        self._read = read

    def __getitem__(self, part: slice) -> torch.Tensor:
        return self._read(self.index[part])


def compare_images(
    images_a: torch.Tensor,
    images_b: torch.Tensor,
    metrics: str | Sequence[str | Metric] = ("fd",),
    batch_size: int = 32,
    device: torch.device | str | None = None,
    seed: int = 0,
    **metric_options: Any,
) -> dict[str, float]:
    """Metrics between two image sets ``(N, C, H, W)``, uint8 or float in [-1, 1] (no cache).

    ``images_a`` plays the real side, ``images_b`` the generated one. Each set is measured
    through its RGB view (:func:`~projected_gan.metrics.features.as_uint8_rgb`); the two may
    differ in size (each is resized to the feature network's input).
    """
    _check_batch_size(batch_size)
    images_a, images_b = _as_images(images_a, "images_a"), _as_images(images_b, "images_b")
    device = resolve_device(device)
    groups = _group(build_metrics(metrics, **metric_options), device)
    with torch.inference_mode():
        real = _feature_pass(groups, _image_batches(images_a, batch_size, device), device)
        fake = _feature_pass(groups, _image_batches(images_b, batch_size, device), device)
        return _compute(groups, real, fake, seed)


def evaluate_real_split(
    dataset: Any,
    metrics: str | Sequence[str | Metric] = ("fd",),
    batch_size: int = 32,
    device: torch.device | str | None = None,
    seed: int = 0,
    **metric_options: Any,
) -> dict[str, float]:
    """Metrics between two random halves of ``dataset.images`` (a floor for generated sets).

    The halves hold N // 2 images each, drawn with ``seed``; the result is the value a perfect
    generator would get with N // 2 samples per side, and shows the metric's noise level.
    """
    images = _as_images(dataset.images, "dataset.images")
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    half = images.shape[0] // 2
    return compare_images(
        images[order[:half]],
        images[order[half : 2 * half]],
        metrics,
        batch_size=batch_size,
        device=device,
        seed=seed,
        **metric_options,
    )


def _dataset_fingerprint(dataset: Any, images: RealSet) -> str:
    """``dataset.fingerprint`` when present, else a sha256 of the image (and label) bytes."""
    fingerprint = getattr(dataset, "fingerprint", None)
    if fingerprint:
        return str(fingerprint)
    digest = hashlib.sha256(images[:].contiguous().numpy().tobytes())
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        digest.update(torch.as_tensor(labels).contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:32]


def _fake_batches(
    generator_fn: GeneratorFn,
    num_images: int,
    batch_size: int,
    labels: torch.Tensor | None,
    shape: tuple[int, int, int],
    device: torch.device,
    seed: int,
    rank: int = 0,
    world: int = 1,
) -> Iterator[torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    for k, start in enumerate(range(0, num_images, batch_size)):
        n = min(batch_size, num_images - start)
        c = None
        if labels is not None:  # the real label distribution, by drawing real examples' labels
            c = labels[torch.randint(labels.shape[0], (n,), generator=gen)]
        if k % world != rank:  # another rank's batch (its labels were drawn all the same)
            yield None
            continue
        fakes = generator_fn(n, None if c is None else c.to(device))
        ok = (
            isinstance(fakes, torch.Tensor)
            and fakes.is_floating_point()
            and fakes.ndim == 4
            and fakes.shape[0] == n
        )
        if not ok:
            got = (
                f"{tuple(fakes.shape)} {fakes.dtype}"
                if isinstance(fakes, torch.Tensor)
                else type(fakes).__name__
            )
            raise ValueError(
                f"generator_fn(n_batch={n}, labels) must return float images "
                f"({n}, {', '.join(map(str, shape))}) in [-1, 1] (the dataset's channels and "
                f"size), got {got}"
            )
        check_image_shape(fakes.shape[1:], shape, f"generator_fn(n_batch={n}, labels)")
        yield as_uint8_rgb(fakes.to(device))


def _real_statistics(
    groups: list[_Group],
    key: dict[str, Any],
    batches: Callable[[], Iterable[torch.Tensor | None]],
    device: torch.device,
    cache: StatsCache | None,
    world: int = 1,
) -> list[FeatureStats]:
    """Each group's real statistics: from ``cache`` when present, else one shared pass.

    ``key`` names the real set (:func:`~projected_gan.metrics.stats_cache.real_stats_key`);
    each group's kind of statistics and extractor identity are added to it. ``batches()`` is
    called only when some group is missing. Distributed, rank 0's cache decides for every rank.
    """
    keys = [
        {
            **key,
            "kind": "moments" + (f"+features{g.max_items}" if g.max_items else ""),
            "extractor": g.extractor.identity,
        }
        for g in groups
    ]
    real = [None if cache is None else cache.load(k, device=device) for k in keys]
    missing = [i for i, r in enumerate(real) if r is None]
    if world > 1:
        missing = broadcast_object(missing)
    if missing:
        fresh = _feature_pass([groups[i] for i in missing], batches(), device, world)
        for i, stats in zip(missing, fresh):
            real[i] = stats
            if cache is not None:
                cache.save(keys[i], stats)
    return real


def evaluate(
    generator_fn: GeneratorFn,
    dataset: Any,
    metrics: str | Sequence[str | Metric] = ("fd",),
    num_images: int = 1000,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    mirror: bool = False,
    num_real: int | None = None,
    use_cache: bool = True,
    distributed: bool = False,
    **metric_options: Any,
) -> dict[str, float]:
    """Metrics of ``num_images`` generated images against the real images of ``dataset``.

    Args:
        generator_fn: ``generator_fn(n_batch, labels) -> (n_batch, C, H, W)`` float in
            ~[-1, 1], with the dataset's channels and size (else a ValueError says both);
            called under ``torch.inference_mode()``. ``labels`` is ``None`` for
            unlabelled datasets, else ``dataset.labels`` rows drawn uniformly at random (so the
            fakes follow the real label distribution), on ``device``. Outputs are clamped to
            [-1, 1] and quantised to uint8 like the reals.
        dataset: has ``images`` (uint8 ``(N, C, H, W)``, CPU) or ``read_images(indices)``
            (then also ``len``, ``channels``, ``size`` ``(H, W)``: a dataset decoded on the
            fly), ``labels`` (``None`` or ``(N, ...)``), ideally ``fingerprint`` (content hash;
            computed from the bytes if absent) and ``spec`` (its DataSpec: ``spec.fit`` is part
            of the real-statistics key). Every metric sees the RGB view of the images (C = 1
            or 2: luma replicated; C >= 4: channels 0-2), of reals and fakes alike.
        metrics: registry names (``"fd,kid"``, ``("fd", "fid")``) or :class:`Metric` objects.
        num_images: generated images.
        batch_size: images per extractor call (reals and fakes).
        device: where features are computed; default CUDA when available.
        cache_dir: real-statistics cache (default: ``metrics/`` in the package cache,
            ``$PROJECTED_GAN_CACHE`` or ``~/.cache/projected_gan``).
        seed: label draws and KID subsets.
        mirror: add x-flipped reals (as when training with ``mirror``); part of the cache key.
        num_real: use a fixed random subset of this many reals (default: all, or
            ``dataset.metric_reals`` where the dataset has it).
        use_cache: read and write cached real statistics.
        distributed: inside a ``torch.distributed`` process group, every rank calls
            ``evaluate`` with the same arguments; each embeds its share of the batches (reals
            and fakes, batch ``j`` on rank ``j % world_size``, so give each rank's
            ``generator_fn`` its own latents), rank 0 gathers the features, reads and writes
            the cache and computes, and every rank returns rank 0's results.
        **metric_options: routed to the metrics, see :func:`build_metrics`.

    Returns:
        ``{"fd": ..., "kid": ..., "kid_std": ..., "fid": ...}`` for the requested metrics.
    """
    _check_batch_size(batch_size)
    if not isinstance(num_images, int) or num_images < 2:
        raise ValueError(f"num_images must be an int >= 2, got {num_images!r}")
    images = RealSet(dataset, num_real)
    labels = getattr(dataset, "labels", None)
    labels = None if labels is None else torch.as_tensor(labels)
    if labels is not None and labels.numel() == 0:
        labels = None
    device = resolve_device(device)
    rank, world = 0, 1
    if distributed and is_active():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    groups = _group(build_metrics(metrics, **metric_options), device)
    cache = StatsCache(cache_dir) if use_cache and rank == 0 else None
    fingerprint = _dataset_fingerprint(dataset, images) if cache else ""
    shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))  # (C, H, W)
    fit = getattr(getattr(dataset, "spec", None), "fit", None)

    with torch.inference_mode():
        key = real_stats_key(
            fingerprint, shape[1:], shape[0], fit, mirror=mirror, num_real=int(images.shape[0])
        )

        def real_batches() -> Iterator[torch.Tensor | None]:
            return _image_batches(images, batch_size, device, mirror, rank, world)

        real = _real_statistics(groups, key, real_batches, device, cache, world)
        fakes = _fake_batches(
            generator_fn, num_images, batch_size, labels, shape, device, seed, rank, world
        )
        fake = _feature_pass(groups, fakes, device, world)
        results = _compute(groups, real, fake, seed) if rank == 0 else None
    return broadcast_object(results) if world > 1 else results
