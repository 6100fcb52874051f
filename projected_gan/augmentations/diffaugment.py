"""DiffAugment (Zhao et al., 2020): differentiable random augmentation of every D input.

Each op draws its own parameters for every sample, runs on the whole batch at once (no loop over
samples) and is differentiable with respect to the images. Projected GAN uses the policy
``"color,translation,cutout"`` on reals and fakes alike.

Consecutive ops of one family are fused, so a policy touches the batch as few times as possible:

* colour ops (``brightness``, ``saturation``, ``contrast``; ``color`` is all three in that order)
  are affine in the pixel, its channel mean and the image mean. Any run of them folds into
  per-sample coefficients and one ``gain * x + offset`` pass (plus one channel-mean reduction).
* geometric ops (``translation``, ``cutout``, ``offset``) only move or zero pixels. Any run of them
  folds into one map from output pixel to source pixel, applied by a single nearest-neighbour
  ``grid_sample`` whose coordinates are exact pixel centres (zeros outside), i.e. exact integer
  shifts.

The default policy therefore costs a channel-mean reduction plus two passes over the batch.
kornia is not used: its colour jitter and translations follow other formulas (interpolating
warps), while each op here is one fused tensor expression.

New ops: subclass :class:`ColorOp` or :class:`GeometricOp` (to be fused) or write any module
called as ``op(x, generator=None)``, and register it in ``AUGMENTATIONS`` with
``tags=("diffaugment_op",)`` so policies can name it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from projected_gan.errors import PartBuildError
from projected_gan.registry import AUGMENTATIONS

__all__ = [
    "DEFAULT_POLICY",
    "OP_TAG",
    "Brightness",
    "Color",
    "ColorOp",
    "Contrast",
    "Cutout",
    "DiffAugment",
    "GeometricOp",
    "Offset",
    "PixelAffine",
    "Saturation",
    "SourceMap",
    "Translation",
    "cut_out",
    "diffaugment_ops",
    "parse_policy",
    "translate",
]

DEFAULT_POLICY = "color,translation,cutout"
OP_TAG = "diffaugment_op"  # registry tag of the names a policy may use


def _check_images(x: object) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point image tensor (B, C, H, W), got {x!r}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    return x


def _check_range(name: str, low: float, high: float) -> None:
    if not low <= high:
        raise ValueError(f"{name}: low must be <= high, got low={low!r}, high={high!r}")


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1] (fraction of the image size), got {ratio!r}")


# Random numbers are drawn on the generator's device (so a seeded generator gives the same
# numbers whatever the images' device) and then moved to the images' device.
def _uniform(
    shape: tuple[int, ...], low: float, high: float, device: torch.device, generator: Any
) -> Tensor:
    src = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=src).to(device)
    return u * (high - low) + low


def _randint(
    low: int, high: int, shape: tuple[int, ...], device: torch.device, generator: Any
) -> Tensor:
    """Integers in [low, high) as float32 (exact), shape ``shape``."""
    src = generator.device if generator is not None else device
    n = torch.randint(low, high, shape, generator=generator, device=src)
    return n.to(device=device, dtype=torch.float32)


# ------------------------------------------------------------------------------- colour ops
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
        """Augment ``x`` ``(B, C, H, W)``; same shape, dtype and memory format."""
        return _recolor(_check_images(x), [self], generator)


def _recolor(x: Tensor, ops: Sequence[ColorOp], generator: Any) -> Tensor:
    affine = PixelAffine()
    for op in ops:  # draws in policy order, so fused and one-by-one runs match
        affine = op.fold(affine, op.draw(x.shape[0], x.device, generator))
    return affine.apply(x)


class _UniformColorOp(ColorOp):
    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        _check_range(type(self).__name__, low, high)
        self.low, self.high = float(low), float(high)

    def draw(self, batch: int, device: torch.device, generator: Any = None) -> Tensor:
        return _uniform((batch, 1, 1, 1), self.low, self.high, device, generator)

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


# ---------------------------------------------------------------------------- geometric ops
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
        return _warp(_check_images(x), [self], generator)


def _warp(x: Tensor, ops: Sequence[GeometricOp], generator: Any) -> Tensor:
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
    """Shift by whole pixels, up to round(ratio * size) per axis (default 1/8); zero fill."""

    def __init__(self, ratio: float = 0.125) -> None:
        super().__init__()
        _check_ratio(ratio)
        self.ratio = float(ratio)

    def draw(
        self, batch: int, height: int, width: int, device: torch.device, generator: Any = None
    ) -> tuple[Tensor, Tensor]:
        sy, sx = _size_fraction(self.ratio, height, width)
        dy = _randint(-sy, sy + 1, (batch, 1, 1), device, generator)
        dx = _randint(-sx, sx + 1, (batch, 1, 1), device, generator)
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
    """Zero one square of side round(ratio * size) (default 0.2) at a random centre per sample."""

    def __init__(self, ratio: float = 0.2) -> None:
        super().__init__()
        _check_ratio(ratio)
        self.ratio = float(ratio)

    def draw(
        self, batch: int, height: int, width: int, device: torch.device, generator: Any = None
    ) -> tuple[Tensor, Tensor]:
        sh, sw = _size_fraction(self.ratio, height, width)
        # Centres as in the reference: [0, size) for odd sides, [0, size] for even ones.
        cy = _randint(0, height + 1 - sh % 2, (batch, 1, 1), device, generator)
        cx = _randint(0, width + 1 - sw % 2, (batch, 1, 1), device, generator)
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
    dy, dx = _per_sample_pairs("shift", shift, _check_images(x), "(dy, dx)")
    op = Offset() if wrap else Translation()
    return op.source(SourceMap.identity(x), (dy, dx), x.shape[2], x.shape[3]).sample(x)


def cut_out(x: Tensor, top_left: Tensor, size: tuple[int, int]) -> Tensor:
    """Zero the ``size = (h, w)`` rectangle at ``top_left`` ``(B, 2)`` (row, col) in each image."""
    top, left = _per_sample_pairs("top_left", top_left, _check_images(x), "(row, col)")
    return SourceMap.identity(x).cut(top, left, (int(size[0]), int(size[1]))).sample(x)


# ------------------------------------------------------------------------------- pipeline
def diffaugment_ops() -> list[str]:
    """Names a policy may use (augmentations registered with the ``diffaugment_op`` tag)."""
    return AUGMENTATIONS.names(tags=(OP_TAG,))


def parse_policy(policy: str | Sequence[str | nn.Module]) -> list[nn.Module]:
    """Ops for ``policy``: a comma string (``"color,translation"``) or a list of names/modules."""
    if isinstance(policy, str):
        items: list[Any] = [p.strip() for p in policy.split(",") if p.strip()]
    elif isinstance(policy, Sequence):
        items = list(policy)
    else:
        raise TypeError(
            f"policy must be a comma-separated string or a list of op names, got {policy!r}"
        )
    valid = diffaugment_ops()
    ops: list[nn.Module] = []
    for item in items:
        if isinstance(item, nn.Module):
            ops.append(item)
        elif isinstance(item, str) and item.strip().lower() in valid:
            ops.append(AUGMENTATIONS.create(item.strip().lower()))
        else:
            raise PartBuildError(
                f"unknown DiffAugment op {item!r} in policy {policy!r}; valid ops: "
                f"{', '.join(valid)}",
                field="policy",
            )
    return ops


def _family(op: nn.Module) -> type:
    if isinstance(op, ColorOp):
        return ColorOp
    if isinstance(op, GeometricOp):
        return GeometricOp
    return nn.Module


@AUGMENTATIONS.register("diffaugment")
class DiffAugment(nn.Module):
    """DiffAugment: the policy's ops in order, each sample drawing its own parameters.

    Args:
        policy: comma-separated op names or a list of names / op modules; ``""`` is the
            identity. Valid names: :func:`diffaugment_ops` (``color``, ``brightness``,
            ``saturation``, ``contrast``, ``translation``, ``cutout``, ``offset``, ...).

    Call as ``aug(x, generator=None)`` with ``x`` ``(B, C, H, W)`` float images (any float dtype,
    channels_last allowed), usually in [-1, 1]; the output has the same shape, dtype and memory
    format and is differentiable with respect to ``x``. A ``torch.Generator`` makes the draws
    reproducible (numbers are drawn on its device; one on ``x``'s device avoids host copies).
    """

    def __init__(self, policy: str | Sequence[str | nn.Module] = DEFAULT_POLICY) -> None:
        super().__init__()
        self.ops = nn.ModuleList(parse_policy(policy))
        # Runs of same-family ops, grouped once here: forward stays free of graph breaks.
        self._runs = [
            (family, list(group)) for family, group in itertools.groupby(self.ops, key=_family)
        ]

    @property
    def policy(self) -> str:
        return ",".join(_op_name(op) for op in self.ops)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``x`` ``(B, C, H, W)``; one fused pass per run of colour / geometric ops."""
        _check_images(x)
        for family, run in self._runs:
            if family is ColorOp:
                x = _recolor(x, run, generator)
            elif family is GeometricOp:
                x = _warp(x, run, generator)
            else:
                for op in run:
                    x = op(x, generator=generator)
        return x

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"


def _op_name(op: nn.Module) -> str:
    for name in diffaugment_ops():
        if type(op) is AUGMENTATIONS.get(name):
            return name
    return type(op).__name__
