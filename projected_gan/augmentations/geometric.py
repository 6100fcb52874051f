"""DiffAugment's geometric ops: translation, offset (wrapping) and cutout.

They only move or zero pixels, so any run of them folds into one :class:`SourceMap` (output
pixel -> source pixel), applied by a single nearest-neighbour ``grid_sample`` whose coordinates
are exact pixel centres (zeros outside): exact integer shifts. One map per sample moves all its
channels alike, whatever their number (alpha, depth stay aligned with RGB), and sizes are per
axis: an H x W image shifts by up to ``ratio * H`` rows and ``ratio * W`` columns.
:func:`translate` and :func:`cut_out` apply given (not random) shifts and cut-outs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from projected_gan.augmentations.op_base import OP_TAG, check_images, check_ratio, randint
from projected_gan.registry import AUGMENTATIONS

__all__ = [
    "Cutout",
    "GeometricOp",
    "Offset",
    "SourceMap",
    "Translation",
    "cut_out",
    "translate",
    "warp",
]


class SourceMap(NamedTuple):
    """Where each output pixel reads: ``out[b, :, i, j] = x[b, :, ys, xs]`` if kept, else 0.

    ``ys`` (rows) and ``xs`` (columns) are float32 pixel indices broadcastable to ``(B, H, W)``;
    they start as ``(1, H, 1)`` and ``(1, 1, W)`` and stay that small under shifts. NaN (or a
    position outside the image) reads 0. ``keep`` is an optional ``(B, H, W)`` bool mask over
    output pixels (False reads 0), so cut-outs never force the coordinates to full size.
    """

    ys: Tensor
    xs: Tensor
    keep: Tensor | None = None

    @classmethod
    def identity(cls, x: Tensor) -> SourceMap:
        h, w = x.shape[-2:]
        ys = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
        xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
        return cls(ys, xs)

    def shifted(self, dy: Tensor, dx: Tensor) -> SourceMap:
        """Read from ``(ys - dy, xs - dx)`` (``(B, 1, 1)`` shifts)."""
        return self._replace(ys=self.ys - dy, xs=self.xs - dx)

    def clipped(self, height: int, width: int) -> SourceMap:
        """Mark positions outside ``height x width`` as NaN, so a later wrap cannot revive them."""
        ys = torch.where((self.ys >= 0) & (self.ys < height), self.ys, math.nan)
        xs = torch.where((self.xs >= 0) & (self.xs < width), self.xs, math.nan)
        return self._replace(ys=ys, xs=xs)

    def cut(self, top: Tensor, left: Tensor, size: tuple[int, int]) -> SourceMap:
        """Drop output pixels whose source lies in the ``size`` rectangle at ``(top, left)``."""
        # outside = row outside | column outside: only the final | is full size.
        row_out = (self.ys < top) | (self.ys >= top + size[0])
        col_out = (self.xs < left) | (self.xs >= left + size[1])
        keep = row_out | col_out
        return self._replace(keep=keep if self.keep is None else self.keep & keep)

    def sample(self, x: Tensor) -> Tensor:
        """Apply to ``x`` ``(B, C, H, W)`` with one nearest-neighbour ``grid_sample``."""
        b, _, h, w = x.shape
        # Pixel centres in grid_sample's normalised coordinates (align_corners=False); NaN and
        # dropped pixels become -2, outside the image, which zero padding turns into 0.
        gx = (self.xs * (2.0 / w) + (1.0 / w - 1.0)).nan_to_num(nan=-2.0)
        gy = (self.ys * (2.0 / h) + (1.0 / h - 1.0)).nan_to_num(nan=-2.0)
        if self.keep is not None:
            gx = torch.where(self.keep, gx, -2.0)
        grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1).expand(b, h, w, 2)
        # float32 coordinates hit pixel centres exactly; bf16 ones do not beyond ~256 px, so
        # half-precision inputs are sampled in float32 (two extra casts, for those dtypes only).
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        out = F.grid_sample(
            work, grid.to(work.dtype), mode="nearest", padding_mode="zeros", align_corners=False
        )
        out = out.to(x.dtype)
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)  # grid_sample writes NCHW
        return out


class GeometricOp(nn.Module):
    """A geometric op: moves or zeroes pixels, described by a :class:`SourceMap`."""

    def draw(
        self, batch: int, height: int, width: int, device: torch.device, generator: Any = None
    ) -> Any:
        """Per-sample parameters for ``batch`` images of ``height x width`` (on ``device``)."""
        raise NotImplementedError

    def source(self, where: SourceMap, params: Any, height: int, width: int) -> SourceMap:
        """``where`` gives positions in this op's output; return the positions in its input."""
        raise NotImplementedError

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``x`` ``(B, C, H, W)``; same shape, dtype and memory format."""
        return warp(check_images(x), [self], generator)


def warp(x: Tensor, ops: Sequence[GeometricOp], generator: Any) -> Tensor:
    """Apply a run of geometric ops to ``x`` ``(B, C, H, W)`` with one ``grid_sample``."""
    b, _, h, w = x.shape
    params = [op.draw(b, h, w, x.device, generator) for op in ops]  # policy order
    where = SourceMap.identity(x)
    for op, p in zip(reversed(ops), reversed(params)):  # the last op reads first
        where = op.source(where, p, h, w)
    return where.sample(x)


def _size_fraction(ratio: float, height: int, width: int) -> tuple[int, int]:
    return int(ratio * height + 0.5), int(ratio * width + 0.5)


@AUGMENTATIONS.register("translation", tags=(OP_TAG,))
class Translation(GeometricOp):
    """Shift by whole pixels, up to round(ratio * H) rows and round(ratio * W) columns (default
    ratio 1/8), every channel alike; zero fill."""

    def __init__(self, ratio: float = 0.125) -> None:
        super().__init__()
        check_ratio(ratio)
        self.ratio = float(ratio)

    def draw(
        self, batch: int, height: int, width: int, device: torch.device, generator: Any = None
    ) -> tuple[Tensor, Tensor]:
        sy, sx = _size_fraction(self.ratio, height, width)
        dy = randint(-sy, sy + 1, (batch, 1, 1), device, generator)
        dx = randint(-sx, sx + 1, (batch, 1, 1), device, generator)
        return dy, dx

    def source(
        self, where: SourceMap, params: tuple[Tensor, Tensor], height: int, width: int
    ) -> SourceMap:
        return where.shifted(*params).clipped(height, width)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"


@AUGMENTATIONS.register("offset", tags=(OP_TAG,))
class Offset(Translation):
    """Shift by whole pixels like `translation`, but wrapping around the borders (a torus roll)."""

    def source(
        self, where: SourceMap, params: tuple[Tensor, Tensor], height: int, width: int
    ) -> SourceMap:
        moved = where.shifted(*params)
        return moved._replace(
            ys=torch.remainder(moved.ys, height), xs=torch.remainder(moved.xs, width)
        )


@AUGMENTATIONS.register("cutout", tags=(OP_TAG,))
class Cutout(GeometricOp):
    """Zero a round(ratio * H) x round(ratio * W) rectangle (default ratio 0.2; a square for
    square images) at a random centre per sample, in every channel."""

    def __init__(self, ratio: float = 0.2) -> None:
        super().__init__()
        check_ratio(ratio)
        self.ratio = float(ratio)

    def draw(
        self, batch: int, height: int, width: int, device: torch.device, generator: Any = None
    ) -> tuple[Tensor, Tensor]:
        sh, sw = _size_fraction(self.ratio, height, width)
        # Centres as in the reference: [0, size) for odd sides, [0, size] for even ones.
        cy = randint(0, height + 1 - sh % 2, (batch, 1, 1), device, generator)
        cx = randint(0, width + 1 - sw % 2, (batch, 1, 1), device, generator)
        return cy - sh // 2, cx - sw // 2  # top-left corner, possibly outside the image

    def source(
        self, where: SourceMap, params: tuple[Tensor, Tensor], height: int, width: int
    ) -> SourceMap:
        return where.cut(*params, _size_fraction(self.ratio, height, width))

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"


def _per_sample_pairs(name: str, value: object, x: Tensor, what: str) -> tuple[Tensor, Tensor]:
    if not isinstance(value, Tensor) or value.shape != (x.shape[0], 2):
        got = tuple(value.shape) if isinstance(value, Tensor) else value
        raise ValueError(f"{name} must be a (B, 2) tensor of {what} with B={x.shape[0]}; got {got}")
    v = value.to(device=x.device, dtype=torch.float32).view(-1, 2, 1, 1)
    return v[:, 0], v[:, 1]


def translate(x: Tensor, shift: Tensor, *, wrap: bool = False) -> Tensor:
    """Move each image by whole pixels: ``out[b, :, i, j] = x[b, :, i - dy_b, j - dx_b]``.

    Args:
        x: ``(B, C, H, W)`` images.
        shift: ``(B, 2)`` integer shifts ``(dy, dx)``; positive moves content down / right.
        wrap: wrap around the borders (like ``offset``) instead of filling with zeros.
    """
    dy, dx = _per_sample_pairs("shift", shift, check_images(x), "(dy, dx)")
    op = Offset() if wrap else Translation()
    return op.source(SourceMap.identity(x), (dy, dx), x.shape[2], x.shape[3]).sample(x)


def cut_out(x: Tensor, top_left: Tensor, size: tuple[int, int]) -> Tensor:
    """Zero the ``size = (h, w)`` rectangle at ``top_left`` ``(B, 2)`` (row, col) in each image."""
    top, left = _per_sample_pairs("top_left", top_left, check_images(x), "(row, col)")
    return SourceMap.identity(x).cut(top, left, (int(size[0]), int(size[1]))).sample(x)
