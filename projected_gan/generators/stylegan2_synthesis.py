"""StyleGAN2's synthesis network: a learned constant 4x4 through modulated, demodulated 3x3
convolutions with per-layer noise, FIR-filtered x2 up-sampling and the skip (toRGB) design.

Sizes: squares 32 ... 1024, and ``(H, W)`` whose short side is one of those and whose long side
is a multiple of a quarter of the short side, at most 4x it (see
:func:`~projected_gan.generators.layers.check_image_size`): the constant is then ``4 x k``
(64x96: ``(C, 4, 6)``), blocks and channels are keyed by the short side, and the toRGB layers
make ``img_channels`` (1-16).

Modulated convolution, two exact formulations (``fused_modconv``):

* ``False`` (default): scale the input channels by the styles, run one ordinary convolution with
  the shared weight over the whole batch, then scale the output channels by the demodulation
  coefficients. Demodulation is a per-(sample, output-channel) scalar, so this equals convolving
  with per-sample weights. It keeps dense cuDNN kernels, channels_last and tensor cores, and
  never materialises ``B`` weight copies; it is what StyleGAN2 itself trains with.
* ``True``: build per-sample weights ``(B, O, I, k, k)`` and run one grouped convolution with
  ``groups=B``. Fewer activation passes, but grouped convs with large groups are slow in cuDNN,
  especially with channels_last; useful mainly at batch 1 inference.

Demodulation coefficients are computed as ``rsqrt(styles**2 @ sum_k(weight**2).T)``, a
``(B, I) x (I, O)`` matmul instead of reducing a ``(B, O, I, k, k)`` tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from projected_gan.generators.layers import NoiseInjection, first_block_size, stage_size
from projected_gan.generators.stylegan2_mapping import LRELU_GAIN, EqualLinear
from projected_gan.sizes import SizeLike, as_size, size_text

__all__ = [
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGB",
    "fir_filter",
    "modulated_conv2d",
    "upsample_fir",
]


def fir_filter(taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)) -> Tensor:
    """Separable low-pass FIR filter ``(k, k)``: outer product of ``taps``, normalised to sum 1."""
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upsample_fir(x: Tensor, fir: Tensor) -> Tensor:
    """x2 up-sampling ``(B, C, H, W) -> (B, C, 2H, 2W)``: zero insertion, then the 4x4 ``fir``.

    One depthwise transposed convolution; the gain of 4 keeps the mean (3 of 4 samples are zero).
    """
    c = x.shape[1]
    kernel = (fir * 4).to(x.dtype)[None, None].expand(c, 1, -1, -1)
    return F.conv_transpose2d(x, kernel, stride=2, padding=1, groups=c)


def _fold_fir(weight: Tensor, fir: Tensor) -> Tensor:
    """Kernel ``(O, I, k + 3, k + 3)`` of "transposed conv with ``weight``, then blur by ``fir``".

    Convolution is associative, so the blur folds into the (small) weight and the up-sampling
    convolution makes one pass over the activations instead of two.
    """
    o, i, kh, kw = weight.shape
    f = (fir * 4).to(weight.dtype)[None, None]
    folded = F.conv2d(weight.reshape(o * i, 1, kh, kw), f, padding=fir.shape[-1] - 1)
    return folded.reshape(o, i, *folded.shape[-2:])


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    *,
    demodulate: bool = True,
    up_fir: Tensor | None = None,
    fused: bool = False,
) -> Tensor:
    """Convolution of ``x`` ``(B, I, H, W)`` with ``weight`` ``(O, I, k, k)`` modulated per sample
    by ``styles`` ``(B, I)`` (and demodulated to unit fan-in norm) -> ``(B, O, H', W')``.

    With ``up_fir`` the convolution is transposed with stride 2 and low-pass filtered, so
    ``H' = 2H``; otherwise it is "same"-padded (odd ``k``) and ``H' = H``.
    """
    b, i = x.shape[:2]
    o, _, k, _ = weight.shape
    styles = styles.to(x.dtype)
    dcoefs = None
    if demodulate:
        fan_in = weight.square().sum(dim=(2, 3)).to(x.dtype)  # (O, I)
        dcoefs = (styles.square() @ fan_in.T + 1e-8).rsqrt()  # (B, O)
    if up_fir is not None:
        weight = _fold_fir(weight, up_fir)
        pad = (k + 1) // 2
    weight = weight.to(x.dtype)

    if not fused:
        x = x * styles[:, :, None, None]
        if up_fir is not None:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=pad)
        else:
            x = F.conv2d(x, weight, padding=k // 2)
        return x if dcoefs is None else x * dcoefs[:, :, None, None]

    w = weight[None] * styles[:, None, :, None, None]  # (B, O, I, k', k')
    if dcoefs is not None:
        w = w * dcoefs[:, :, None, None, None]
    x = x.reshape(1, b * i, *x.shape[2:])
    if up_fir is not None:
        w = w.transpose(1, 2).reshape(b * i, o, *w.shape[-2:])
        x = F.conv_transpose2d(x, w, stride=2, padding=pad, groups=b)
    else:
        x = F.conv2d(x, w.reshape(b * o, i, k, k), padding=k // 2, groups=b)
    return x.reshape(b, o, *x.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated conv (optionally x2 up) -> noise -> bias -> leaky ReLU·√2 -> clamp.

    ``x`` ``(B, in_channels, H, W)``, ``w`` ``(B, w_dim)`` -> ``(B, out_channels, H', W')``;
    ``resolution`` is ``(H', W')`` (one int when square), the size of the noise buffer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: SizeLike,
        kernel_size: int = 3,
        up: bool = False,
        conv_clamp: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.noise = NoiseInjection(resolution)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.up = up
        self.register_buffer("fir", fir_filter() if up else None, persistent=False)
        self.conv_clamp = conv_clamp
        self.fused = fused

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, up_fir=self.fir, fused=self.fused)
        x = self.noise(x, noise_mode)
        x = F.leaky_relu(x + self.bias.to(x.dtype)[None, :, None, None], 0.2) * LRELU_GAIN
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToRGB(nn.Module):
    """Modulated 1x1 conv, no demodulation (linear): ``(B, C, H, W) -> (B, img_channels, H, W)``."""

    def __init__(
        self,
        in_channels: int,
        img_channels: int,
        w_dim: int,
        conv_clamp: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp
        self.fused = fused

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=self.fused)
        x = x + self.bias.to(x.dtype)[None, :, None, None]
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisBlock(nn.Module):
    """One resolution: (constant | up-conv) -> conv -> toRGB added to the up-sampled image.

    ``resolution``: the block's short side (4 for the constant's block); ``size``: its maps'
    ``(h, w)``, default square. Consumes ``num_conv + 1`` ws; its toRGB shares its w with the next
    block's first conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        conv_clamp: float | None = None,
        fused: bool = False,
        size: SizeLike | None = None,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.size = as_size(resolution if size is None else size, "size")
        self.is_first = resolution == 4
        kw = {"w_dim": w_dim, "resolution": self.size, "conv_clamp": conv_clamp, "fused": fused}
        if self.is_first:
            self.const = nn.Parameter(torch.randn(out_channels, *self.size))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=True, **kw)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **kw)
        self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp, fused=fused)
        self.num_conv = 1 if self.is_first else 2
        self.register_buffer("fir", None if self.is_first else fir_filter(), persistent=False)

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str = "random"
    ) -> tuple[Tensor, Tensor]:
        """``ws`` ``(B, num_conv + 1, w_dim)``; returns features and the running image."""
        if self.conv0 is None:
            x = self.const.to(ws.dtype)[None].expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else upsample_fir(img, self.fir).to(y.dtype) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws ``(B, num_ws, w_dim)`` -> images ``(B, img_channels, H, W)``.

    ``img_resolution``: one side or ``(H, W)`` (see the module docstring for the sizes). Blocks
    go by the short side ``r`` = 4, 8, ..., and have ``min(channel_base // r, channel_max)``
    channels.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: SizeLike,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        conv_clamp: float | None = 256.0,
        fused: bool = False,
    ) -> None:
        super().__init__()
        size = as_size(img_resolution, "img_resolution")
        short = min(size)
        first_block_size(size)  # the size rule, with its message
        resolutions = [2**k for k in range(2, int(math.log2(short)) + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in resolutions}
        if min(channels.values()) < 1:
            raise ValueError(
                f"channel_base={channel_base} / channel_max={channel_max} leave no channels at "
                f"{size_text(size)}; need channel_base >= the short side ({short})"
            )
        self.blocks = nn.ModuleList(
            SynthesisBlock(
                channels[r // 2] if r > 4 else 0,
                channels[r],
                w_dim,
                r,
                img_channels,
                conv_clamp=conv_clamp,
                fused=fused,
                size=stage_size(size, r),
            )
            for r in resolutions
        )
        self.channels = channels
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1

    def forward(self, ws: Tensor, noise_mode: str = "random") -> Tensor:
        x = img = None
        start = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, start : start + block.num_conv + 1], noise_mode)
            start += block.num_conv
        return img
