"""What every DiffAugment op shares: the registry tag of policy ops, input checks, random draws.

Random numbers are drawn per sample, on the generator's device (so a seeded generator gives the
same numbers whatever the images' device), then moved to the images' device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["OP_TAG", "check_images", "check_range", "check_ratio", "randint", "uniform"]

OP_TAG = "diffaugment_op"  # registry tag of the names a policy may use


def check_images(x: object) -> Tensor:
    """``x`` itself if it is a floating-point ``(B, C, H, W)`` tensor, else a clear error."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point image tensor (B, C, H, W), got {x!r}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    return x


def check_range(name: str, low: float, high: float) -> None:
    """Refuse ``low > high`` for the op ``name``."""
    if not low <= high:
        raise ValueError(f"{name}: low must be <= high, got low={low!r}, high={high!r}")


def check_ratio(ratio: float) -> None:
    """Refuse a size fraction outside [0, 1]."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1] (fraction of the image size), got {ratio!r}")


def uniform(
    shape: tuple[int, ...], low: float, high: float, device: torch.device, generator: Any
) -> Tensor:
    """U(low, high) float32 of shape ``shape`` on ``device``."""
    src = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=src).to(device)
    return u * (high - low) + low


def randint(
    low: int, high: int, shape: tuple[int, ...], device: torch.device, generator: Any
) -> Tensor:
    """Integers in [low, high) as float32 (exact), shape ``shape``."""
    src = generator.device if generator is not None else device
    n = torch.randint(low, high, shape, generator=generator, device=src)
    return n.to(device=device, dtype=torch.float32)
