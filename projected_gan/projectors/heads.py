"""Projection heads P: fixed random cross-channel (CCM) and cross-scale (CSM) mixing.

The projections are random, never trained (no parameter requires grad) and kept in the state
dict, so a resumed run uses the very same projection. They are drawn from a local generator
seeded with ``seed``: two heads built with the same seed are identical, and building one leaves
the global RNG untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from projected_gan.registry import PROJECTION_HEADS
from projected_gan.sizes import Size

__all__ = ["CCM", "CCMCSM", "INITS", "NoProjection", "ProjectionHead"]

INITS = ("default", "kaiming")


class ProjectionHead(nn.Module):
    """Base class: list of feature maps -> list of projected maps, frozen.

    Built from the feature network's ``channels``/``reductions``; exposes its own output
    ``channels``, ``reductions`` (relative to the image the feature network sees) and
    :meth:`output_sizes`.
    """

    in_channels: tuple[int, ...]
    in_reductions: tuple[float, ...]
    channels: tuple[int, ...]
    reductions: tuple[float, ...]

    def __init__(self, channels: Sequence[int], reductions: Sequence[float]) -> None:
        super().__init__()
        channels, reductions = tuple(channels), tuple(reductions)
        if not channels or len(channels) != len(reductions):
            raise ValueError(
                "channels and reductions must be non-empty and the same length, got "
                f"channels={channels}, reductions={reductions}"
            )
        if any(int(c) != c or c < 1 for c in channels) or any(r <= 0 for r in reductions):
            raise ValueError(
                f"channels must be positive ints and reductions positive, got {channels}, "
                f"{reductions}"
            )
        self.in_channels, self.in_reductions = channels, reductions
        self.channels, self.reductions = channels, reductions

    def output_sizes(self, sizes: Sequence[int | Size]) -> tuple[int | Size, ...]:
        """Size of each output map, given the size of each input feature map: ``(h, w)`` pairs
        (or single sides of square maps, answered in kind)."""
        return tuple(sizes)

    def _check(self, features: Sequence[Tensor]) -> None:
        if len(features) != len(self.in_channels):
            raise ValueError(
                f"{type(self).__name__} expects {len(self.in_channels)} feature maps, "
                f"got {len(features)}"
            )

    def train(self, mode: bool = True) -> ProjectionHead:
        """Always eval: the projection is fixed."""
        return super().train(False)


@PROJECTION_HEADS.register("none")
class NoProjection(ProjectionHead):
    """No projection: the raw feature maps go to the discriminators."""

    def __init__(self, channels: Sequence[int], reductions: Sequence[float]) -> None:
        super().__init__(channels, reductions)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """List of ``(B, C_i, H_i, W_i)`` -> the same list."""
        self._check(features)
        return list(features)


def _frozen_conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    """A frozen conv with bias, left uninitialised (see :meth:`CCM.reset_projection`)."""
    # skip_init builds on 'meta' then allocates: PyTorch's default init would draw from the
    # global RNG, which building a head must not touch
    conv = torch.nn.utils.skip_init(nn.Conv2d, cin, cout, kernel, padding=kernel // 2)
    return conv.requires_grad_(False)


def _draw_(tensor: Tensor, generator: torch.Generator, low: float, high: float) -> None:
    # drawn on the CPU, then copied: the same values whatever device the head lives on
    tensor.copy_(torch.empty(tensor.shape, device="cpu").uniform_(low, high, generator=generator))


@PROJECTION_HEADS.register("ccm")
class CCM(ProjectionHead):
    """Cross-channel mixing: one fixed random 1x1 conv (with bias) per scale, no activation.

    Args:
        channels, reductions: of the feature network's maps.
        cout: output channels of the first scale.
        expand: scale ``i`` gets ``cout * 2**i`` channels (else ``cout`` everywhere).
        seed: seed of the random projection.
        init: ``"default"`` (PyTorch's conv init, the official code) or ``"kaiming"`` (paper).
    """

    def __init__(
        self,
        channels: Sequence[int],
        reductions: Sequence[float],
        cout: int = 64,
        expand: bool = True,
        seed: int = 0,
        init: str = "default",
    ) -> None:
        super().__init__(channels, reductions)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if not isinstance(cout, int) or cout < 1:
            raise ValueError(f"cout must be a positive int, got {cout!r}")
        self.cout, self.expand, self.seed, self.init = cout, expand, int(seed), init
        mixed = tuple(cout * 2**i if expand else cout for i in range(len(self.in_channels)))
        self.ccm = nn.ModuleList(_frozen_conv(cin, c, 1) for cin, c in zip(self.in_channels, mixed))
        self.channels = mixed
        self.reset_projection()

    @torch.no_grad()
    def reset_projection(self) -> None:
        """(Re)draw every conv of the head from ``seed``, in registration order.

        ``init="default"`` is PyTorch's Conv2d init (kaiming_uniform with a=sqrt(5), i.e.
        U(+-1/sqrt(fan_in)) for weights and bias); ``"kaiming"`` is N(0, 2/fan_in), zero bias.
        """
        generator = torch.Generator().manual_seed(self.seed)
        for conv in self.modules():
            if not isinstance(conv, nn.Conv2d):
                continue
            fan_in = conv.weight[0].numel()
            if self.init == "default":
                bound = 1.0 / math.sqrt(fan_in)
                _draw_(conv.weight, generator, -bound, bound)
                _draw_(conv.bias, generator, -bound, bound)
            else:
                std = math.sqrt(2.0 / fan_in)
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * std)
                conv.bias.zero_()

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """List of ``(B, C_i, H_i, W_i)`` -> list of ``(B, channels[i], H_i, W_i)``."""
        self._check(features)
        return [conv(f) for conv, f in zip(self.ccm, features)]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, cout={self.cout}, expand={self.expand}, seed={self.seed}"


@PROJECTION_HEADS.register("ccm_csm")
class CCMCSM(CCM):
    """CCM then cross-scale mixing: top-down fusion with x2 bilinear upsampling per scale.

    From the deepest scale to the shallowest: add the deeper fused map to this scale's CCM map,
    upsample x2 (bilinear, align_corners=True) and apply a fixed random conv that halves the
    channels (with ``expand``) except at the shallowest scale. Maps of any ``h x w`` (odd sides,
    non-square): a deeper map whose x2 upsampling misses the next one by a pixel (7x11 -> 14x22
    against 14x21) is resampled to it. Outputs have twice the size of the feature maps: for
    EfficientNet-lite0 at 256 px, channels (64, 64, 128, 256) at sides (128, 64, 32, 16), i.e.
    reductions (2, 4, 8, 16).

    Args:
        csm_kernel: 1 (the official code) or 3 (the paper's figure).
        Others as :class:`CCM`.
    """

    def __init__(
        self,
        channels: Sequence[int],
        reductions: Sequence[float],
        cout: int = 64,
        expand: bool = True,
        seed: int = 0,
        init: str = "default",
        csm_kernel: int = 1,
    ) -> None:
        super().__init__(channels, reductions, cout=cout, expand=expand, seed=seed, init=init)
        if csm_kernel not in (1, 3):
            raise ValueError(f"csm_kernel must be 1 or 3, got {csm_kernel!r}")
        self.csm_kernel = csm_kernel
        mixed = self.channels
        fused = tuple(c // 2 if expand and i > 0 else c for i, c in enumerate(mixed))
        self.csm = nn.ModuleList(_frozen_conv(cin, c, csm_kernel) for cin, c in zip(mixed, fused))
        self.channels = fused
        self.reset_projection()  # again, now that the CSM convs exist (CCM draws are unchanged)
        self.reductions = tuple(r / 2 if r % 2 else r // 2 for r in self.in_reductions)

    def output_sizes(self, sizes: Sequence[int | Size]) -> tuple[int | Size, ...]:
        return tuple(2 * s if isinstance(s, int) else (2 * s[0], 2 * s[1]) for s in sizes)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """List of ``(B, C_i, H_i, W_i)`` -> list of ``(B, channels[i], 2 H_i, 2 W_i)``."""
        mixed = super().forward(features)
        out: list[Tensor] = [None] * len(mixed)  # type: ignore[list-item]
        deeper: Tensor | None = None
        for i in reversed(range(len(mixed))):
            x = mixed[i]
            if deeper is not None:
                if deeper.shape[-2:] != x.shape[-2:]:  # strides not exactly x2 apart
                    deeper = F.interpolate(
                        deeper, size=x.shape[-2:], mode="bilinear", align_corners=True
                    )
                x = x + deeper
            conv = self.csm[i]
            if self.csm_kernel == 1:
                # A 1x1 conv commutes with bilinear upsampling (whose weights sum to 1), so mix
                # first on the 4x smaller map: same result, a quarter of the work.
                x = _upsample2(conv(x))
            else:
                x = conv(_upsample2(x))
            out[i] = deeper = x
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, csm_kernel={self.csm_kernel}"


def _upsample2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
