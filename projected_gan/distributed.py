"""Data-parallel plumbing on torch.distributed, launched by ``torchrun``.

We all-reduce gradients explicitly (one flat, coalesced all-reduce per network per step) instead
of wrapping G and D in DDP: a Projected GAN alternates which network needs gradients, runs D's
heads twice per step (reals and fakes apart, so BatchNorm sees them apart), keeps BatchNorm
statistics per process (as the official code), and skips whole steps with non-finite gradients.
DDP's reducer hooks and buffer broadcasts fight each of these; one explicit all-reduce does not.

Rules every caller keeps: rank 0 alone writes files; every collective below is entered by every
rank in the same order (so decisions that end a loop, such as stopping on Ctrl-C, are agreed
with :class:`StopVote`, never taken by one rank alone); collectives time out after
``$PROJECTED_GAN_DIST_TIMEOUT`` seconds (default 600), so a lost rank cannot hang the others.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "DistInfo",
    "StopVote",
    "all_gather_objects",
    "all_gather_rows",
    "all_reduce_grads",
    "average_",
    "barrier",
    "broadcast_object",
    "broadcast_parameters",
    "collective_timeout",
    "dist_info",
    "gather_rng_states",
    "init_distributed",
    "is_active",
    "join",
    "node_first",
    "restore_rng_states",
    "shutdown",
    "sync_batchnorm_heads",
]

TIMEOUT_ENV = "PROJECTED_GAN_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def is_active() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def dist_info() -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as set by torchrun (defaults: one process)."""
    if is_active():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def collective_timeout() -> float:
    """Seconds a collective may wait for the other ranks: ``$PROJECTED_GAN_DIST_TIMEOUT`` or 600.

    Long enough for rank 0 to write a checkpoint or compute real-image statistics while the
    others wait; short enough that a rank lost on another node does not hang the job for good.
    """
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def init_distributed(device: torch.device, timeout_s: float | None = None) -> DistInfo:
    """Join the process group torchrun describes (nccl on CUDA, gloo otherwise); no-op alone.

    ``timeout_s`` (default :func:`collective_timeout`) bounds every collective: past it the
    waiting ranks fail with an error instead of hanging.
    """
    info = dist_info()
    if info.enabled and not is_active():
        timeout = timedelta(seconds=collective_timeout() if timeout_s is None else timeout_s)
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=timeout, **kwargs)
    return info


def join(device: str | torch.device) -> tuple[torch.device, DistInfo]:
    """This process's device (``cuda``: this rank's GPU) and the process group it joined.

    Raises :class:`~projected_gan.errors.InputError` for a device that is not there.
    """
    from projected_gan.devices import resolve_device

    dev = resolve_device(device, dist_info().local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev, init_distributed(dev)


def node_first(info: DistInfo, load: Callable[[], T]) -> T:
    """``load()`` on each node's first process (local rank 0) first, then on the node's others.

    The first process of every node decodes that node's cache while the node's other processes
    wait; they then map it. A cache on a filesystem that all nodes share is built once: the
    first processes of the nodes meet at the cache's lock file, and those that come second find
    it built (:func:`projected_gan.data.store.build_lock`).
    """
    first = info.local_rank == 0
    if info.enabled and not first:
        barrier()
    result = load()
    if info.enabled and first:
        barrier()
    return result


def shutdown() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if is_active():
        dist.destroy_process_group()


def barrier() -> None:
    if is_active():
        dist.barrier()


def all_reduce_grads(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Average gradients over processes with one flat all-reduce (missing grads count as 0)."""
    if world_size <= 1:
        return
    grads = [
        p.grad if p.grad is not None else torch.zeros_like(p, memory_format=torch.preserve_format)
        for p in params
    ]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world_size)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        chunk = flat[offset : offset + n].view_as(g)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += n


def average_(tensor: torch.Tensor) -> torch.Tensor:
    """In place: the mean of ``tensor`` over ranks (unchanged alone)."""
    if is_active() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
        tensor.div_(dist.get_world_size())
    return tensor


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers of rank ``src`` to every process."""
    if not is_active():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` itself alone)."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` alone)."""
    if not is_active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_rows(rows: torch.Tensor | None, device: torch.device) -> list[torch.Tensor]:
    """Every rank's ``(n_r, D)`` rows, in rank order, on every rank; ``n_r`` may differ or be 0.

    ``rows=None`` stands for no rows (a rank with nothing to contribute, whose ``D`` may not
    even be known yet). Two collectives: the ``(n_r, D)`` headers, then the rows padded to the
    longest. Returned tensors are float32 on ``device``.
    """
    if rows is not None and rows.ndim != 2:
        raise ValueError(f"rows must be a (N, D) tensor or None, got shape {tuple(rows.shape)}")
    if not is_active():
        return [] if rows is None else [rows.to(device, torch.float32)]
    shape = (0, 0) if rows is None else tuple(rows.shape)
    header = torch.tensor(shape, dtype=torch.int64, device=device)
    headers = [torch.empty_like(header) for _ in range(dist.get_world_size())]
    dist.all_gather(headers, header)
    sizes = torch.stack(headers).tolist()  # one host sync per call: cheap next to the rows
    longest, dim = max(n for n, _ in sizes), max(d for _, d in sizes)
    if longest == 0:
        return []
    padded = torch.zeros(longest, dim, dtype=torch.float32, device=device)
    if rows is not None and rows.shape[0]:
        padded[: rows.shape[0]] = rows.to(device, torch.float32)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return [part[:n] for part, (n, _) in zip(parts, sizes) if n]


class StopVote:
    """Agree, across ranks, on the step after which everyone stops (Ctrl-C, SIGTERM, ...).

    Call it once per step on every rank with this rank's wish to stop; it returns True on the
    same call on every rank. Alone, it returns the wish at once. Distributed, each call starts
    a MAX all-reduce of the wish and returns the outcome of the *previous* call's: waiting for
    that one only waits for the previous step, so on a GPU the host stays a step ahead and no
    step stalls for it. A wish is therefore honoured after one more step.
    """

    def __init__(self, device: torch.device | str, world_size: int) -> None:
        self.device = torch.device(device)
        self.world_size = world_size
        self._pending: tuple[torch.Tensor, Any] | None = None

    def __call__(self, wish: bool) -> bool:
        if self.world_size <= 1:
            return bool(wish)
        flag = torch.full((), float(bool(wish)), device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        event = None
        if self.device.type == "cuda":  # copy back without waiting for the current step
            host = torch.empty((), pin_memory=True)
            host.copy_(flag, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            flag = host
        previous, self._pending = self._pending, (flag, event)
        if previous is None:
            return False
        flag, event = previous
        if event is not None:
            event.synchronize()
        return bool(flag)


def sync_batchnorm_heads(D: torch.nn.Module) -> torch.nn.Module:
    """Convert the BatchNorm layers of D's trainable heads (``D.discriminator``) to SyncBatchNorm.

    The frozen projector is left alone: its BatchNorm layers are fixed, eval-mode statistics
    of the pretrained network, which no batch, synchronised or not, may change. SyncBatchNorm
    runs on CUDA devices only.
    """
    heads = getattr(D, "discriminator", None)
    if not isinstance(heads, torch.nn.Module):
        raise TypeError(
            f"sync_batchnorm_heads: D must have a 'discriminator' module (the trainable heads), "
            f"got {type(D).__name__}"
        )
    D.discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(heads)
    return D


def gather_rng_states(
    latents: torch.Generator, device: torch.device, dist: DistInfo
) -> dict[str, torch.Tensor]:
    """RNG states: the shared latents' and every rank's own (``rng.torch.<rank>``, 0: none).

    Collective when distributed: every rank sends its states to rank 0.
    """
    own = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        own["cuda"] = torch.cuda.get_rng_state(device)
    rng = {"rng.latents": latents.get_state()}
    gathered = all_gather_objects(own) if dist.enabled else [own]
    for rank, states in enumerate(gathered):
        for key, state in states.items():
            rng[f"rng.{key}" + (f".{rank}" if rank else "")] = state
    return rng


def restore_rng_states(
    extra: Mapping[str, torch.Tensor],
    latents: torch.Generator,
    device: torch.device,
    dist: DistInfo,
    *,
    saved_world_size: int,
    seed: int,
    step: int,
) -> None:
    """Put the RNG streams back; with another number of processes, reseed per rank instead."""
    rank = dist.rank
    if "rng.latents" in extra:
        latents.set_state(extra["rng.latents"])
    suffix = f".{rank}" if rank else ""
    if saved_world_size == dist.world_size and f"rng.torch{suffix}" in extra:
        torch.set_rng_state(extra[f"rng.torch{suffix}"])
        if device.type == "cuda" and f"rng.cuda{suffix}" in extra:
            torch.cuda.set_rng_state(extra[f"rng.cuda{suffix}"], device)
    else:  # another number of processes: fresh, distinct streams per rank (augmentation)
        w = dist.world_size
        torch.manual_seed((seed * w + rank) * 1_000_003 + step)
