"""Image grids and image files: what the user sees of a run.

One image is written as a PNG with as many channels as it has (1 gray ``L``, 2 gray + alpha
``LA``, 3 ``RGB``, 4 ``RGBA``; :func:`save_image`) or, with 5 or more channels, as a ``(H, W, C)``
uint8 ``.npy`` array (:func:`save_array`). Grids always show something a viewer can open: 1 and 3
channels as they are, any other count as its :func:`rgb_view`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from projected_gan.atomic import atomic_write_bytes

__all__ = [
    "PNG_MODES",
    "grid_image",
    "grid_shape",
    "image_file_suffix",
    "make_grid",
    "rgb_view",
    "save_array",
    "save_image",
    "save_image_grid",
    "to_float",
    "to_uint8",
]

#: PNG colour mode for each channel count a PNG can hold.
PNG_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


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


def rgb_view(images: torch.Tensor) -> torch.Tensor:
    """The 3-channel view of ``(B, C, H, W)`` images, any dtype: what the pretrained networks
    (D's feature network, the metrics' Inception or EfficientNet) and the sample grids see.

    C = 1 (grayscale): the channel replicated; C = 2 (luma + alpha): the luma replicated;
    C = 3: the images themselves; C >= 4 (RGBA, RGB + depth, multi-spectral): channels 0-2,
    i.e. the data's RGB channels come first. A view where possible (no copy for C >= 3).
    """
    if images.ndim != 4 or images.shape[1] < 1:
        raise ValueError(f"rgb_view: images must be (B, C, H, W), got {tuple(images.shape)}")
    c = images.shape[1]
    if c == 3:
        return images
    if c <= 2:
        return images[:, :1].expand(-1, 3, -1, -1)
    return images[:, :3]


# A grid may be at most this much wider than tall (or taller than wide) before empty cells are
# accepted to make it squarer: 32 square samples as 4 x 8, not 6 x 6 with 4 black cells.
GRID_MAX_ASPECT = 2.0


def grid_shape(n: int, aspect: float = 1.0) -> tuple[int, int]:
    """(rows, cols) for ``n`` images of width/height ``aspect`` (1: square, 1.5: 64 x 96).

    The layout with the fewest empty cells among those whose whole grid is at most
    ``GRID_MAX_ASPECT`` times wider than tall or taller than wide; of those, the squarest.
    No layout ever has an empty row. Where no layout is that square (e.g. 3 images of 1 x 4),
    the squarest of all.
    """
    if n < 1:
        raise ValueError(f"grid_shape: n must be >= 1, got {n}")
    if not aspect > 0:
        raise ValueError(f"grid_shape: aspect must be > 0, got {aspect}")
    # rows = ceil(n / cols): the fewest rows for cols, so never an empty row
    layouts = {(math.ceil(n / cols), cols) for cols in range(1, n + 1)}

    def squareness(layout: tuple[int, int]) -> float:
        rows, cols = layout
        return abs(math.log(cols * aspect / rows))

    limit = math.log(GRID_MAX_ASPECT) + 1e-9
    fitting = [lay for lay in layouts if squareness(lay) <= limit]
    if not fitting:
        return min(layouts, key=lambda lay: (squareness(lay), lay))
    return min(fitting, key=lambda lay: (lay[0] * lay[1] - n, squareness(lay), lay))


def make_grid(images: torch.Tensor, cols: int | None = None) -> torch.Tensor:
    """Tile ``(B, C, H, W)`` uint8 images into one ``(C, rows*H, cols*W)`` image, row-major;
    ``cols`` defaults to :func:`grid_shape`'s for the images' count and aspect (empty cells are
    black)."""
    b, c, h, w = images.shape
    cols = cols or grid_shape(b, w / h)[1]
    rows = math.ceil(b / cols)
    pad = rows * cols - b
    if pad:
        images = torch.cat([images, images.new_zeros(pad, c, h, w)])
    return images.reshape(rows, cols, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, cols * w)


def image_file_suffix(channels: int) -> str:
    """``".png"`` for images a PNG can hold (1-4 channels), ``".npy"`` for 5 or more."""
    return ".png" if channels in PNG_MODES else ".npy"


def _one_uint8(image: torch.Tensor, what: str) -> np.ndarray:
    """One ``(C, H, W)`` image (uint8, or float in [-1, 1]) as a ``(H, W, C)`` uint8 array."""
    if image.ndim != 3:
        raise ValueError(f"{what}: image must be (C, H, W), got {tuple(image.shape)}")
    if image.dtype != torch.uint8:
        image = to_uint8(image[None])[0]
    return image.detach().cpu().permute(1, 2, 0).numpy()


def _png_bytes(array: np.ndarray) -> bytes:
    """``(H, W, C)`` uint8, C in 1..4 -> PNG bytes; Pillow picks L / LA / RGB / RGBA by C."""
    pil = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """Write one ``(C, H, W)`` uint8 image (or float in [-1, 1]) as PNG, atomically: C = 1 as
    ``L``, 2 as ``LA``, 3 as ``RGB``, 4 as ``RGBA``. More channels: :func:`save_array`."""
    array = _one_uint8(image, "save_image")
    if array.shape[-1] not in PNG_MODES:
        raise ValueError(
            f"save_image: a PNG holds 1 to 4 channels, got {array.shape[-1]}; write the image "
            "with save_array (a (H, W, C) .npy) or its rgb_view"
        )
    atomic_write_bytes(path, _png_bytes(array))


def save_array(image: torch.Tensor, path: str | Path) -> None:
    """Write one ``(C, H, W)`` uint8 image (or float in [-1, 1]), any channel count, as a
    ``(H, W, C)`` uint8 ``.npy`` array (``numpy.load`` reads it), atomically."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(_one_uint8(image, "save_array")), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def _viewable(images: torch.Tensor) -> torch.Tensor:
    """Gray and RGB images as they are, any other channel count as its :func:`rgb_view`."""
    return images if images.shape[1] in (1, 3) else rgb_view(images)


def save_image_grid(images: torch.Tensor, path: str | Path, cols: int | None = None) -> None:
    """Write ``(B, C, H, W)`` images (uint8, or float in [-1, 1]) as one PNG grid, atomically:
    gray (C = 1) or RGB; any other channel count shows its :func:`rgb_view`."""
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    save_image(make_grid(_viewable(images.cpu()), cols), path)


def grid_image(images: torch.Tensor) -> np.ndarray:
    """``(B, C, H, W)`` images (uint8, or float in [-1, 1]) tiled into one read-only uint8
    ``(H', W', 1 or 3)`` array, as in the PNG grids of ``samples/`` (C other than 1 and 3: the
    :func:`rgb_view`)."""
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    grid = make_grid(_viewable(images.cpu())).permute(1, 2, 0).numpy()
    grid.setflags(write=False)  # shared by every logger
    return grid
