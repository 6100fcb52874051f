"""The feature network contract F: image in [-1, 1] -> list of feature maps, frozen.

A feature network converts [-1, 1] to its own mean/std and applies its resize rule itself, so
callers never get either wrong, and it is frozen for good: no parameter requires grad and it
stays in eval mode (BatchNorm statistics never change) even when a parent module calls
``.train()``.

The timm-backed networks live in :mod:`.timm_cnn` (CNNs) and :mod:`.timm_transformer` (ViT,
DeiT, Swin); pretrained weights resolve offline first in :mod:`.weights`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from projected_gan.errors import PartBuildError
from projected_gan.sizes import Size, SizeLike, as_size

__all__ = [
    "FEATURE_NETWORK_CONTRACT",
    "RESIZE_RULES",
    "FeatureNetwork",
    "FeatureNetworkContractError",
    "check_feature_network",
]

RESIZE_RULES = ("upsample_only", "always", "never")

# ------------------------------------------------------------------------------ the contract
FEATURE_NETWORK_CONTRACT = (
    "a feature network subclasses projected_gan.projectors.FeatureNetwork, sets `channels` and "
    "`reductions` (one entry per feature map it returns), implements forward_features(x) -> "
    "list of (B, channels[i], H / reductions[i], W / reductions[i]) maps, and calls "
    "self.freeze() at the end of __init__"
)


class FeatureNetworkContractError(PartBuildError, TypeError):
    """A module used as feature network breaks :data:`FEATURE_NETWORK_CONTRACT` (wrong class,
    or maps that disagree with its declared ``channels``). A :class:`PartBuildError` (exit 2 on
    the command line) and, for older callers, a ``TypeError``."""


def check_feature_network(
    net: Any, where: str = "feature_network", image_size: SizeLike = 64
) -> None:
    """Refuse ``net`` unless it keeps the contract, by its class and one dry forward.

    The forward runs once, batch 1, without autograd, at the smallest input the network accepts:
    ``max(reductions)`` pixels square, which the resize rule takes to ``input_size`` (rule
    ``"never"`` feeds ``image_size``, one side or ``(H, W)``, the size it will see in training).
    The maps must be one per entry of ``channels`` with that many channels, so a wrong
    declaration fails here and not as a conv shape error in the heads later.

    Raises:
        FeatureNetworkContractError: with ``field=where``.
    """
    if not isinstance(net, FeatureNetwork):
        raise FeatureNetworkContractError(
            f"{where} must build a projected_gan.projectors.FeatureNetwork, got "
            f"{type(net).__name__}: "
            f"{FEATURE_NETWORK_CONTRACT}",
            field=where,
        )
    name = type(net).__name__
    side = max(1, math.ceil(max(net.reductions)))
    h, w = as_size(image_size, "image_size") if net.resize == "never" else (side, side)
    param = next(net.parameters(), None)
    x = torch.zeros(1, 3, h, w, device=net._scale.device)
    if param is not None and param.is_floating_point():
        x = x.to(param.dtype)
    try:
        with torch.no_grad():
            maps = net(x)
    except NotImplementedError as exc:
        raise FeatureNetworkContractError(
            f"{where}: {exc}; {FEATURE_NETWORK_CONTRACT}", field=where
        ) from exc
    except (RuntimeError, ValueError) as exc:
        raise FeatureNetworkContractError(
            f"{where}: {name} failed a dry forward of a (1, 3, {h}, {w}) image: "
            f"{type(exc).__name__}: {exc}",
            field=where,
        ) from exc
    if not isinstance(maps, (list, tuple)) or not all(isinstance(m, Tensor) for m in maps):
        raise FeatureNetworkContractError(
            f"{where}: {name} returned {type(maps).__name__}, not a list of tensors; "
            f"{FEATURE_NETWORK_CONTRACT}",
            field=where,
        )
    got = tuple(m.shape[1] if m.ndim == 4 else None for m in maps)
    if got != tuple(net.channels):
        raise FeatureNetworkContractError(
            f"{where}: {name} declares channels={tuple(net.channels)} but its forward returns "
            f"maps with channels {got} (shapes {[tuple(m.shape) for m in maps]}); set "
            "`channels` (and `reductions`) to match what forward_features returns",
            field=where,
        )


class FeatureNetwork(nn.Module):
    """Base class of frozen feature networks: image in [-1, 1] -> list of feature maps.

    Subclasses build their layers, set ``channels`` and ``reductions`` (one entry per returned
    map), implement :meth:`forward_features` on the already normalised and resized image, and
    call :meth:`freeze` at the end of ``__init__``.

    Resize rule (``resize``), applied to ``(B, 3, H, W)`` before the network, bilinear, the
    aspect kept: the image is scaled so that its SHORT side becomes ``input_size`` and the long
    side ``round(long * input_size / short)`` (64x96 -> 224x336):
        ``"upsample_only"``: only when the short side is below ``input_size`` (the official
        code: 224 below 224, native resolution otherwise); ``"always"``: whatever the size;
        ``"never"``: native resolution.
    A square image goes to ``input_size`` x ``input_size``, as it always did. Why keep the
    aspect rather than stretch to a square or pad to one: on 64x96 and 96x64 crops of the flower
    photos, EfficientNet-lite0's pooled features classify the 5 classes as well under each of
    the three views (keep never clearly behind, the native 64 px view 4-6 points worse), and
    keeping it shows the network undistorted shapes at the cost per pixel of a square image
    (1.5x a 224x224 view for 2:3; benchmarks/results/aspect_view.md). Networks whose input grid
    is fixed (the vit/ family: ``keeps_aspect = False``) are stretched to ``input_size`` x
    ``input_size`` instead. :meth:`seen_size` and :meth:`output_sizes` give the sizes without a
    forward pass.

    Blur (``blur``): passes of a ``[1, 2, 1] / 4`` binomial filter (both axes, reflected
    borders) on the image at its own resolution, before the resize. Why: the network's strided
    convolutions send back a gradient concentrated at the image's highest frequencies (for
    EfficientNet-lite0 on 64 px flowers, 63% of its energy at periods under 4 px, where the photos
    hold 6% of their power), and a generator that follows it draws a fine dot texture. One pass
    leaves 18% there; the filter has zero response at the Nyquist frequency and gain 1 for flat
    areas (benchmarks/README.md, "demo recipe").

    Args:
        mean, std: the per-channel statistics the network was trained with, for images in [0, 1].
        input_size: side used by the resize rule (None only with ``resize="never"``).
        resize: one of :data:`RESIZE_RULES`.
        blur: binomial blur passes before the resize (0: none).
    """

    channels: tuple[int, ...]
    reductions: tuple[int, ...]
    # False for networks whose input grid is fixed (a ViT's tokens): the resize then stretches
    # every image to input_size x input_size
    keeps_aspect: bool = True

    def __init__(
        self,
        *,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        input_size: int | None = 224,
        resize: str = "upsample_only",
        blur: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(blur, int) or isinstance(blur, bool) or blur < 0:
            raise ValueError(f"blur must be an int >= 0 (binomial passes), got {blur!r}")
        if resize not in RESIZE_RULES:
            raise ValueError(f"resize must be one of {RESIZE_RULES}, got {resize!r}")
        if input_size is None and resize != "never":
            raise ValueError(f"input_size=None needs resize='never', got resize={resize!r}")
        if input_size is not None and (not isinstance(input_size, int) or input_size < 1):
            raise ValueError(f"input_size must be a positive int or None, got {input_size!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 entries, std > 0; got mean={mean}, std={std}")
        self.input_size = input_size
        self.resize = resize
        self.blur = blur
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        # ((x + 1) / 2 - mean) / std folded into one multiply-add; skipped when it is the identity
        scale = torch.tensor([0.5 / s for s in self.std]).view(1, 3, 1, 1)
        shift = torch.tensor([(0.5 - m) / s for m, s in zip(self.mean, self.std)]).view(1, 3, 1, 1)
        self._identity_norm = bool((scale == 1).all() and (shift == 0).all())
        self.register_buffer("_scale", scale, persistent=False)
        self.register_buffer("_shift", shift, persistent=False)
        self.train(False)

    # ---------------------------------------------------------------- subclass interface
    def forward_features(self, x: Tensor) -> list[Tensor]:
        """The network proper on the normalised, resized image; returns one map per stage."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_features(x)")

    def freeze(self) -> FeatureNetwork:
        """Switch off gradients for every parameter and check ``channels``/``reductions``."""
        channels = tuple(getattr(self, "channels", ()))
        reductions = tuple(getattr(self, "reductions", ()))
        if not channels or len(channels) != len(reductions):
            raise ValueError(
                f"{type(self).__name__}: set channels and reductions (same non-zero length) "
                f"before freeze(); got channels={channels}, reductions={reductions}"
            )
        self.channels, self.reductions = channels, reductions
        self.requires_grad_(False)
        return self.train(False)

    # ------------------------------------------------------------------------- behaviour
    def train(self, mode: bool = True) -> FeatureNetwork:
        """Always eval: the network is frozen, its BatchNorm statistics must never move."""
        return super().train(False)

    def seen_size(self, image_size: SizeLike) -> Size:
        """``(h, w)`` of the image the network actually sees for an input of ``image_size``
        (one side, square, or ``(H, W)``), after the resize rule."""
        h, w = as_size(image_size, "image_size")
        return self._target_size(h, w) or (h, w)

    def output_sizes(self, image_size: SizeLike) -> tuple[Size, ...]:
        """``(h, w)`` of each feature map for an input of ``image_size`` (side or ``(H, W)``).

        Computed without a forward pass, after the resize rule, as ``ceil(side / reduction)``
        per axis (TF-"same" and PyTorch "half" padding both give that).
        """
        h, w = self.seen_size(image_size)
        return tuple((math.ceil(h / r), math.ceil(w / r)) for r in self.reductions)

    def normalize(self, x: Tensor) -> Tensor:
        """[-1, 1] -> the network's own mean/std, ``(B, 3, H, W)``."""
        if self._identity_norm:
            return x
        return torch.addcmul(self._shift.to(x.dtype), x, self._scale.to(x.dtype))

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x`` ``(B, 3, H, W)`` in [-1, 1] -> list of maps ``(B, channels[i], h_i, w_i)``, with
        ``(h_i, w_i) = output_sizes((H, W))[i]``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be (B, 3, H, W) in [-1, 1], got shape {tuple(x.shape)}")
        if self.blur:
            x = binomial_blur(x, self.blur)
        h, w = x.shape[-2:]
        target = self._target_size(h, w)
        if target is None:
            return self.forward_features(self.normalize(x))
        if target[0] * target[1] > h * w:  # normalise the smaller tensor (both ops are linear)
            x = self._resize(self.normalize(x), target)
        else:
            x = self.normalize(self._resize(x, target))
        return self.forward_features(x)

    def _target_size(self, h: int, w: int) -> Size | None:
        """The size the resize rule gives an ``h x w`` image; None = unchanged."""
        side = self.input_size
        if self.resize == "never" or (self.resize == "upsample_only" and min(h, w) >= side):
            return None
        if not self.keeps_aspect or h == w:
            target = (side, side)
        elif h < w:  # round half up, in integers: the same size on every platform
            target = (side, (2 * w * side + h) // (2 * h))
        else:
            target = ((2 * h * side + w) // (2 * w), side)
        return None if target == (h, w) else target

    @staticmethod
    def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, reductions={self.reductions}, "
            f"input_size={self.input_size}, resize={self.resize!r}"
            + (f", blur={self.blur}" if self.blur else "")
        )


def binomial_blur(x: Tensor, passes: int = 1) -> Tensor:
    """``passes`` separable ``[1, 2, 1] / 4`` blurs of float ``(B, C, H, W)``, reflected borders.

    Same shape and dtype; response ``cos(pi f) ** (2 * passes)`` at ``f`` cycles per pixel
    along each axis: 1 for flat areas, 0 for a one-pixel checkerboard.
    """
    from kornia.filters import filter2d_separable  # kornia's import is slow: only when used

    k = torch.tensor([[0.25, 0.5, 0.25]], dtype=x.dtype, device=x.device)
    for _ in range(passes):
        x = filter2d_separable(x, k, k, border_type="reflect")
    return x
