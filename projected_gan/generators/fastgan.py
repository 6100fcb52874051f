"""FastGAN generator as used by Projected GAN: ``fastgan`` (big up-blocks) and ``fastgan_lite``.

z (on the hypersphere) -> SN transposed conv to 4x4 -> up-blocks to the output resolution, with
skip-layer excitation (SLE) gates 4->64, 8->128, 16->256, 32->512 -> linear SN 3x3 conv to
``img_channels`` (1-16). Conditional variants swap every up-block BatchNorm for class-conditional
BatchNorm.

Sizes: squares 32 ... 1024, and ``(H, W)`` whose short side is one of those and whose long side
is a multiple of a quarter of the short side, at most 4x it (see
:func:`~projected_gan.generators.layers.check_image_size`). The transposed conv then makes a
``4 x k`` first block (64x96: 4x6), and stages, channels and SLE pairs are keyed by the short
side (``up.8`` is the stage 8 pixels on the short side: 8x12 for 64x96).
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from projected_gan.generators.layers import (
    Generator,
    LabelEmbedding,
    NoiseInjection,
    first_block_size,
    normalize_2nd_moment,
    stage_size,
)
from projected_gan.registry import GENERATORS
from projected_gan.sizes import SizeLike, as_size
from projected_gan.spectral_norm import spectral_norm

__all__ = [
    "ConditionalBatchNorm2d",
    "FastGANGenerator",
    "FastGANLiteGenerator",
    "InitLayer",
    "SkipLayerExcitation",
    "UpBlock",
    "fastgan",
    "fastgan_channels",
    "fastgan_lite",
]

# Channels per resolution are ngf times these (so 2048 at 4x4 ... 16 at 1024x1024 for ngf=128).
CHANNEL_MULTIPLIERS = {
    4: Fraction(16),
    8: Fraction(8),
    16: Fraction(4),
    32: Fraction(2),
    64: Fraction(2),
    128: Fraction(1),
    256: Fraction(1, 2),
    512: Fraction(1, 4),
    1024: Fraction(1, 8),
}
SLE_PAIRS = ((4, 64), (8, 128), (16, 256), (32, 512))  # (gate source, gated resolution)


def fastgan_channels(ngf: int, img_resolution: SizeLike) -> dict[int, int]:
    """Channels of every stage from 4 up to the short side of ``img_resolution`` (one side or
    ``(H, W)``) for width ``ngf``, keyed by the stage's short side."""
    if not isinstance(ngf, int) or ngf < 1:
        raise ValueError(f"ngf must be a positive int, got {ngf!r}")
    short = min(as_size(img_resolution, "img_resolution"))
    channels = {}
    for res, mult in CHANNEL_MULTIPLIERS.items():
        if res > short:
            break
        ch = ngf * mult
        if ch.denominator != 1:
            need = max(m.denominator for r, m in CHANNEL_MULTIPLIERS.items() if r <= short)
            raise ValueError(
                f"ngf={ngf} gives {float(ch)} channels at stage {res}; for images whose short "
                f"side is {short} ngf must be a multiple of {need}"
            )
        channels[res] = int(ch)
    return channels


def _sn(module: nn.Module) -> nn.Module:
    return spectral_norm(module)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without own affine; per sample ``gain = 1 + SN-Linear(e)``, ``bias = SN-Linear(e)``

    ``x`` ``(B, C, H, W)``, class embedding ``e`` ``(B, embed_dim)`` -> ``(B, C, H, W)``.
    """

    def __init__(self, num_features: int, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.gain = _sn(nn.Linear(embed_dim, num_features))
        self.bias = _sn(nn.Linear(embed_dim, num_features))

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        gain = 1 + self.gain(embedding)
        bias = self.bias(embedding)
        return self.norm(x) * gain[:, :, None, None] + bias[:, :, None, None]


class InitLayer(nn.Module):
    """z ``(B, z_dim)`` -> ``(B, channels, h, w)``: SN transposed conv ``h x w`` (4x4 for squares,
    e.g. 4x6 for 64x96 images), BatchNorm, GLU."""

    def __init__(self, z_dim: int, channels: int, size: SizeLike = 4) -> None:
        super().__init__()
        kernel = as_size(size, "size")
        self.conv = _sn(nn.ConvTranspose2d(z_dim, 2 * channels, kernel, 1, 0, bias=False))
        self.norm = nn.BatchNorm2d(2 * channels)

    def forward(self, z: Tensor) -> Tensor:
        return F.glu(self.norm(self.conv(z[:, :, None, None])), dim=1)


class UpBlock(nn.Module):
    """Nearest x2, then [SN conv3x3 -> (noise) -> (conditional) BN -> GLU], twice if ``big``.

    Every conv makes ``2 * out_channels`` so that GLU can halve it. ``big`` blocks (``fastgan``)
    carry noise injection after each conv; small blocks (``fastgan_lite``) have one conv, no noise.
    ``(B, in_channels, H, W)`` -> ``(B, out_channels, 2H, 2W)``; ``size`` is the output's
    ``(2H, 2W)`` (one int when square), the size of the noise buffers.
    """

    def __init__(
        self, in_channels: int, out_channels: int, size: SizeLike, big: bool, embed_dim: int = 0
    ) -> None:
        super().__init__()
        n = 2 if big else 1
        ins = [in_channels] + [out_channels] * (n - 1)
        self.convs = nn.ModuleList(
            _sn(nn.Conv2d(c, 2 * out_channels, 3, 1, 1, bias=False)) for c in ins
        )
        self.noises = nn.ModuleList(NoiseInjection(size) for _ in range(n)) if big else None
        self.conditional = embed_dim > 0
        self.norms = nn.ModuleList(
            ConditionalBatchNorm2d(2 * out_channels, embed_dim)
            if self.conditional
            else nn.BatchNorm2d(2 * out_channels)
            for _ in range(n)
        )

    def forward(
        self, x: Tensor, embedding: Tensor | None = None, noise_mode: str = "random"
    ) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.noises is not None:
                x = self.noises[i](x, noise_mode)
            x = self.norms[i](x, embedding) if self.conditional else self.norms[i](x)
            x = F.glu(x, dim=1)
        return x


class SkipLayerExcitation(nn.Module):
    """Gate a high-resolution map by channel weights computed from a low-resolution one.

    ``small`` ``(B, small_channels, h, w)`` (any aspect) -> pool 4x4 -> SN conv 4x4 -> Swish ->
    SN conv 1x1 -> sigmoid, a ``(B, big_channels, 1, 1)`` gate that multiplies ``big``
    ``(B, big_channels, H, W)``.
    """

    def __init__(self, small_channels: int, big_channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            _sn(nn.Conv2d(small_channels, big_channels, 4, 1, 0, bias=False)),
            nn.SiLU(),
            _sn(nn.Conv2d(big_channels, big_channels, 1, 1, 0, bias=False)),
            nn.Sigmoid(),
        )

    def forward(self, small: Tensor, big: Tensor) -> Tensor:
        return big * self.gate(small)


@GENERATORS.register("fastgan", tags=("fastgan",))
class FastGANGenerator(Generator):
    """FastGAN, big up-blocks (2 convs + noise); 105.7 M params at 256; H x W to 4:1, 1-16 channels.

    ``img_resolution``: one side (32 ... 1024) or ``(H, W)`` with the short side one of those and
    the long side a multiple of a quarter of it, up to 4x (e.g. ``(64, 96)``, ``(32, 64)``);
    ``img_channels``: 1 to 16. Output ``(B, img_channels, H, W)``.

    The Projected GAN variant: linear output, every layer spectrally normalised. ``w`` is the
    normalised ``z`` ``(B, z_dim)``; for conditional models the class embedding ``(B, z_dim)``
    is appended, so ``w`` is ``(B, 2 * z_dim)`` and interpolating it also blends classes.
    Truncation does not apply (there is no mapping network to average).
    """

    lite = False  # small up-blocks: FastGANLiteGenerator

    def __init__(
        self,
        img_resolution: SizeLike = 256,
        c_dim: int = 0,
        img_channels: int = 3,
        z_dim: int = 256,
        ngf: int = 128,
        noise_mode: str = "random",
    ) -> None:
        super().__init__(
            z_dim=z_dim,
            c_dim=c_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            noise_mode=noise_mode,
        )
        self.ngf = ngf
        lite = self.lite
        short = min(self.img_size)
        channels = fastgan_channels(ngf, short)
        self.resolutions = list(channels)  # stages by their short side: 4, 8, ..., short
        self.embed = LabelEmbedding(c_dim, z_dim) if c_dim > 0 else None
        self.init = InitLayer(z_dim, channels[4], first_block_size(self.img_size))
        self.up = nn.ModuleDict(
            {
                str(res): UpBlock(
                    channels[res // 2],
                    channels[res],
                    stage_size(self.img_size, res),
                    big=not lite,
                    embed_dim=z_dim if c_dim > 0 else 0,
                )
                for res in self.resolutions[1:]
            }
        )
        self.sle_sources = {big: small for small, big in SLE_PAIRS if big <= short}
        self.sle = nn.ModuleDict(
            {
                str(big): SkipLayerExcitation(channels[small], channels[big])
                for big, small in self.sle_sources.items()
            }
        )
        self.to_rgb = _sn(nn.Conv2d(channels[short], img_channels, 3, 1, 1, bias=True))

    @property
    def w_dim(self) -> int:
        """Width of ``w``: ``z_dim``, doubled for conditional models (class embedding appended)."""
        return self.z_dim * (2 if self.c_dim > 0 else 1)

    def mapping(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0) -> Tensor:
        """``z`` ``(B, z_dim)`` -> ``w`` ``(B, w_dim)``: z / RMS(z) [+ class embedding]."""
        self._check_z(z)
        c = self._check_labels(c, z.shape[0])
        if truncation_psi != 1.0:
            warnings.warn(
                "truncation_psi has no effect on FastGAN generators (no mapping network)",
                UserWarning,
                stacklevel=2,
            )
        w = normalize_2nd_moment(z)
        if self.embed is not None:
            w = torch.cat([w, self.embed(c).to(w.dtype)], dim=1)
        return w

    def synthesis(self, w: Tensor, noise_mode: str | None = None) -> Tensor:
        """``w`` ``(B, w_dim)`` -> images ``(B, img_channels, H, W)``, about [-1, 1], no tanh.

        The z part is re-normalised here, so interpolated ``w`` land back on the hypersphere.
        """
        noise_mode = self._noise_mode(noise_mode)
        if w.ndim != 2 or w.shape[1] != self.w_dim:
            raise ValueError(f"w must have shape (B, w_dim={self.w_dim}), got {tuple(w.shape)}")
        z = normalize_2nd_moment(w[:, : self.z_dim])
        embedding = w[:, self.z_dim :] if self.embed is not None else None
        x = self.init(z)
        feats = {4: x}
        for res in self.resolutions[1:]:
            x = self.up[str(res)](x, embedding, noise_mode)
            if res in self.sle_sources:
                x = self.sle[str(res)](feats[self.sle_sources[res]], x)
            feats[res] = x
        return self.to_rgb(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ngf={self.ngf}, lite={self.lite}"


@GENERATORS.register("fastgan_lite", tags=("fastgan",))
class FastGANLiteGenerator(FastGANGenerator):
    """FastGAN-lite, small up-blocks (1 conv); 79.4 M params at 256; H x W to 4:1, 1-16 channels.

    Same arguments as :class:`FastGANGenerator`; ``noise_mode`` is accepted for a uniform
    interface (lite blocks have no noise layers).
    """

    lite = True


# The registered names, as the factory functions they used to be.
fastgan = FastGANGenerator
fastgan_lite = FastGANLiteGenerator
