"""Image grids and PNG files: what the user sees of a run."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from projected_gan.atomic import atomic_write_bytes

__all__ = [
    "grid_image",
    "grid_shape",
    "make_grid",
    "save_image",
    "save_image_grid",
    "to_float",
    "to_uint8",
]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images ``(B, C, H, W)`` in [-1, 1] -> uint8 in [0, 255], as saving a PNG would.

    Clamped to [-1, 1], mapped linearly (-1 -> 0, 1 -> 255) and rounded to the nearest integer;
    same device. The inverse of :func:`to_float` on uint8 values. Metrics quantise generated
    images with it too, so fakes are measured exactly as they would be saved.
    """
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8)


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images in [0, 255] -> ``dtype`` in [-1, 1] (``x / 127.5 - 1``); shape, device and
    memory format are kept."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float: images must be uint8, got {images.dtype}")
    return images.to(dtype) / 127.5 - 1


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of the most square grid that holds ``n`` images."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def make_grid(images: torch.Tensor, cols: int | None = None) -> torch.Tensor:
    """Tile ``(B, C, H, W)`` uint8 images into one ``(C, rows*H, cols*W)`` image, row-major."""
    b, c, h, w = images.shape
    rows, auto_cols = grid_shape(b)
    cols = cols or auto_cols
    rows = math.ceil(b / cols)
    pad = rows * cols - b
    if pad:
        images = torch.cat([images, images.new_zeros(pad, c, h, w)])
    return images.reshape(rows, cols, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, cols * w)


def _png_bytes(image: torch.Tensor) -> bytes:
    array = image.permute(1, 2, 0).numpy()
    pil = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """Write one ``(C, H, W)`` uint8 image (or float in [-1, 1]) as PNG, atomically."""
    if image.dtype != torch.uint8:
        image = to_uint8(image[None])[0]
    atomic_write_bytes(path, _png_bytes(image.cpu()))


def save_image_grid(images: torch.Tensor, path: str | Path, cols: int | None = None) -> None:
    """Write ``(B, C, H, W)`` images (uint8, or float in [-1, 1]) as one PNG grid, atomically."""
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    save_image(make_grid(images.cpu(), cols), path)


def grid_image(images: torch.Tensor) -> np.ndarray:
    """``(B, C, H, W)`` images (uint8, or float in [-1, 1]) tiled into one read-only uint8
    ``(H', W', C)`` array, as in the PNG grids of ``samples/``."""
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    grid = make_grid(images.cpu()).permute(1, 2, 0).numpy()
    grid.setflags(write=False)  # shared by every logger
    return grid
