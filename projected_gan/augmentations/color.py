"""DiffAugment's colour ops: brightness, saturation, contrast and ``color`` (all three).

Each is affine in the pixel, its channel mean and the image mean, so any run of them folds into
per-sample coefficients of one :class:`PixelAffine` and a single ``gain * x + offset`` pass (plus
one channel-mean reduction when saturation is in the run).

They change colour, so they act on the colour channels only (:func:`colour_channels`): all of
RGB images (C = 3), the one channel of grayscale (C = 1, where saturation changes nothing), the
luma of luma + alpha (C = 2), channels 0-2 of C >= 4 (RGBA, RGB + depth, multi-spectral). The
other channels (alpha, depth, ...) pass unchanged, and the means are taken over colour channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from projected_gan.augmentations.op_base import OP_TAG, check_images, check_range, uniform
from projected_gan.registry import AUGMENTATIONS

__all__ = [
    "Brightness",
    "Color",
    "ColorOp",
    "Contrast",
    "PixelAffine",
    "Saturation",
    "colour_channels",
    "recolor",
]

Coef = Tensor | float  # a (B, 1, 1, 1) float32 tensor, or a constant that needs no tensor work


class PixelAffine(NamedTuple):
    """``y = gain * x + mix * mean_c(x) + image_mix * mean_chw(x) + shift``, per sample.

    Every colour op maps this form to itself, so a run of them folds into one pass. Coefficients
    are ``(B, 1, 1, 1)`` float32 tensors, or Python floats while still at their identity value
    (so the channel or image mean is only computed when some op needs it).
    """

    gain: Coef = 1.0
    mix: Coef = 0.0
    image_mix: Coef = 0.0
    shift: Coef = 0.0

    def brighten(self, b: Tensor) -> PixelAffine:
        """Then add ``b``."""
        return self._replace(shift=self.shift + b)

    def saturate(self, s: Tensor) -> PixelAffine:
        """Then scale the deviation from the per-pixel channel mean by ``s``."""
        # mean_c(y) = (gain + mix) * mean_c(x) + (terms constant per image), so
        # y - mean_c(y) = gain * (x - mean_c(x)).
        return self._replace(gain=self.gain * s, mix=self.mix + (1.0 - s) * self.gain)

    def contrast(self, k: Tensor) -> PixelAffine:
        """Then scale the deviation from the per-image mean by ``k``."""
        # The image mean of y is (gain + mix + image_mix) * mean(x) + shift.
        mix = self.mix * k if isinstance(self.mix, Tensor) else self.mix
        image_mix = self.image_mix + (1.0 - k) * (self.gain + self.mix)
        return self._replace(gain=self.gain * k, mix=mix, image_mix=image_mix)

    def apply(self, x: Tensor) -> Tensor:
        """Evaluate on ``x`` ``(B, C, H, W)``: one reduction if needed, then one fused pass."""
        offset = self.shift
        acc = torch.promote_types(x.dtype, torch.float32)  # means in float32 (or float64)
        if isinstance(self.mix, Tensor):
            pixel_mean = x.mean(1, keepdim=True, dtype=acc)  # (B, 1, H, W)
            if isinstance(self.image_mix, Tensor):
                offset = offset + self.image_mix * pixel_mean.mean((2, 3), keepdim=True)
            if isinstance(offset, Tensor):
                offset = torch.addcmul(offset, self.mix, pixel_mean)
            else:
                offset = self.mix * pixel_mean + offset
        elif isinstance(self.image_mix, Tensor):
            offset = offset + self.image_mix * x.mean((1, 2, 3), keepdim=True, dtype=acc)
        if isinstance(offset, Tensor):
            offset = offset.to(x.dtype)
        if not isinstance(self.gain, Tensor):  # brightness only: gain is still 1
            return x + offset
        gain = self.gain.to(x.dtype)
        if isinstance(offset, Tensor):
            return torch.addcmul(offset, gain, x)
        return x * gain + offset  # only reachable from custom ops that scale without shifting


class ColorOp(nn.Module):
    """A colour op: draws per-sample parameters and folds them into a :class:`PixelAffine`."""

    def draw(self, batch: int, device: torch.device, generator: Any = None) -> Any:
        """Per-sample parameters for ``batch`` images (float32 on ``device``)."""
        raise NotImplementedError

    def fold(self, affine: PixelAffine, params: Any) -> PixelAffine:
        """``affine`` followed by this op with ``params``."""
        raise NotImplementedError

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment the colour channels of ``x`` ``(B, C, H, W)``; same shape, dtype and memory
        format."""
        return recolor(check_images(x), [self], generator)


def colour_channels(channels: int) -> int:
    """How many leading channels of a ``channels``-channel image are colour: 1 for C = 1, 2
    (grayscale, luma + alpha), 3 otherwise (RGB first, as :func:`projected_gan.images.rgb_view`
    reads them)."""
    return 1 if channels <= 2 else 3


def recolor(x: Tensor, ops: Sequence[ColorOp], generator: Any) -> Tensor:
    """Apply a run of colour ops to the colour channels of ``x`` ``(B, C, H, W)`` in one fused
    pass (see :func:`colour_channels`); other channels are returned unchanged."""
    affine = PixelAffine()
    for op in ops:  # draws in policy order, so fused and one-by-one runs match
        affine = op.fold(affine, op.draw(x.shape[0], x.device, generator))
    k = colour_channels(x.shape[1])
    if k == x.shape[1]:
        return affine.apply(x)
    out = torch.cat([affine.apply(x[:, :k]), x[:, k:]], 1)
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class _UniformColorOp(ColorOp):
    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        check_range(type(self).__name__, low, high)
        self.low, self.high = float(low), float(high)

    def draw(self, batch: int, device: torch.device, generator: Any = None) -> Tensor:
        return uniform((batch, 1, 1, 1), self.low, self.high, device, generator)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


@AUGMENTATIONS.register("brightness", tags=(OP_TAG,))
class Brightness(_UniformColorOp):
    """Add U(low, high) (default +-0.5) to every pixel of a sample."""

    def __init__(self, low: float = -0.5, high: float = 0.5) -> None:
        super().__init__(low, high)

    def fold(self, affine: PixelAffine, params: Tensor) -> PixelAffine:
        return affine.brighten(params)


@AUGMENTATIONS.register("saturation", tags=(OP_TAG,))
class Saturation(_UniformColorOp):
    """Scale each pixel's deviation from its channel mean by U(low, high) (default [0, 2])."""

    def __init__(self, low: float = 0.0, high: float = 2.0) -> None:
        super().__init__(low, high)

    def fold(self, affine: PixelAffine, params: Tensor) -> PixelAffine:
        return affine.saturate(params)


@AUGMENTATIONS.register("contrast", tags=(OP_TAG,))
class Contrast(_UniformColorOp):
    """Scale each image's deviation from its mean by U(low, high) (default [0.5, 1.5])."""

    def __init__(self, low: float = 0.5, high: float = 1.5) -> None:
        super().__init__(low, high)

    def fold(self, affine: PixelAffine, params: Tensor) -> PixelAffine:
        return affine.contrast(params)


@AUGMENTATIONS.register("color", tags=(OP_TAG,))
class Color(ColorOp):
    """DiffAugment's colour op: brightness, then saturation, then contrast, fused in one pass."""

    def __init__(self) -> None:
        super().__init__()
        self.parts = nn.ModuleList([Brightness(), Saturation(), Contrast()])

    def draw(self, batch: int, device: torch.device, generator: Any = None) -> list[Tensor]:
        return [op.draw(batch, device, generator) for op in self.parts]

    def fold(self, affine: PixelAffine, params: list[Tensor]) -> PixelAffine:
        for op, p in zip(self.parts, params):
            affine = op.fold(affine, p)
        return affine
