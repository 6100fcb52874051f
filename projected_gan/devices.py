"""Which device and precision to use: one rule for training, metrics, eval and generation."""

from __future__ import annotations

import torch

from projected_gan.errors import InputError

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto``/None -> this process's GPU if there is one, else CPU; ``cuda`` -> this process's
    GPU; a clear :class:`InputError` (``field="device"``) for a GPU that is not there."""
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(
            f"{name!r} is not a device; expected auto, cpu, cuda or cuda:N", field="device"
        ) from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{name!r} asked for, but no CUDA GPU is visible", field="device")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device
