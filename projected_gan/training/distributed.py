"""Data-parallel plumbing on torch.distributed, launched by ``torchrun``.

We all-reduce gradients explicitly (one flat, coalesced all-reduce per network per step) instead
of wrapping G and D in DDP: a Projected GAN alternates which network needs gradients, runs D's
heads twice per step (reals and fakes apart, so BatchNorm sees them apart), keeps BatchNorm
statistics per process (as the official code), and skips whole steps with non-finite gradients.
DDP's reducer hooks and buffer broadcasts fight each of these; one explicit all-reduce does not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_reduce_grads",
    "barrier",
    "broadcast_parameters",
    "dist_info",
    "init_distributed",
    "shutdown",
]


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


def dist_info() -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as set by torchrun (defaults: one process)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device: torch.device, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group torchrun describes (nccl on CUDA, gloo otherwise); no-op alone."""
    info = dist_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s), **kwargs)
    return info


def shutdown() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
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


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers of rank ``src`` to every process."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)
