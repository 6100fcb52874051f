"""StyleGAN2 generator in pure PyTorch (no custom CUDA ops), with Projected GAN's defaults.

Mapping network z [+ class embedding] -> w (equalized learning rate, lr multiplier 0.01, tracked
``w_avg`` for truncation); synthesis from a learned constant 4x4 through modulated, demodulated
3x3 convolutions with per-layer noise, FIR-filtered x2 up-sampling and the skip (toRGB) design.

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

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from projected_gan.generators.layers import (
    Generator,
    LabelEmbedding,
    NoiseInjection,
    normalize_2nd_moment,
)
from projected_gan.registry import GENERATORS

__all__ = [
    "EqualLinear",
    "MappingNetwork",
    "StyleGAN2Generator",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGB",
    "fir_filter",
    "modulated_conv2d",
    "stylegan2",
    "upsample_fir",
]

_LRELU_GAIN = math.sqrt(2.0)


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


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: weights stored at N(0, 1/lr_multiplier²) and
    scaled at run time by ``lr_multiplier / sqrt(in_features)``, so Adam's step is uniform and
    slowed by ``lr_multiplier``. ``(..., in_features) -> (..., out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: str = "linear",
    ) -> None:
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"activation must be 'linear' or 'lrelu', got {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * _LRELU_GAIN
        return x

    def extra_repr(self) -> str:
        out_f, in_f = self.weight.shape
        return f"in_features={in_f}, out_features={out_f}, activation={self.activation}"


class MappingNetwork(nn.Module):
    """z ``(B, z_dim)`` [+ labels] -> ws ``(B, num_ws, w_dim)`` (one w broadcast to every layer).

    z and the class embedding are each normalised to unit RMS and concatenated. In training mode
    the running mean ``w_avg`` is tracked (decay ``w_avg_beta``); truncation pulls w towards it:
    ``w_avg + psi * (w - w_avg)``.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.998,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"map_layers must be >= 1, got {num_layers!r}")
        self.num_ws = num_ws
        self.w_avg_beta = w_avg_beta
        self.embed = LabelEmbedding(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        self.layers = nn.Sequential(
            *(
                EqualLinear(a, b, lr_multiplier=lr_multiplier, activation="lrelu")
                for a, b in itertools.pairwise(features)
            )
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        update_w_avg: bool = True,
    ) -> Tensor:
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            y = normalize_2nd_moment(self.embed(c).to(x.dtype))
            x = torch.cat([x, y], dim=1)
        w = self.layers(x)
        if self.training and update_w_avg:
            with torch.no_grad():
                batch_mean = w.detach().float().mean(dim=0)
                self.w_avg.copy_(batch_mean.lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1.0:
            w = self.w_avg.to(w.dtype).lerp(w, truncation_psi)
        return w[:, None, :].expand(-1, self.num_ws, -1)


class SynthesisLayer(nn.Module):
    """Modulated conv (optionally x2 up) -> noise -> bias -> leaky ReLU·√2 -> clamp.

    ``x`` ``(B, in_channels, H, W)``, ``w`` ``(B, w_dim)`` -> ``(B, out_channels, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
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
        x = F.leaky_relu(x + self.bias.to(x.dtype)[None, :, None, None], 0.2) * _LRELU_GAIN
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
    """One resolution: (constant 4x4 | up-conv) -> conv -> toRGB added to the up-sampled image.

    Consumes ``num_conv + 1`` ws; its toRGB shares its w with the next block's first conv.
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
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.is_first = resolution == 4
        kw = {"w_dim": w_dim, "resolution": resolution, "conv_clamp": conv_clamp, "fused": fused}
        if self.is_first:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
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
    """ws ``(B, num_ws, w_dim)`` -> images ``(B, img_channels, R, R)``.

    Channels at resolution ``r`` are ``min(channel_base // r, channel_max)``.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        conv_clamp: float | None = 256.0,
        fused: bool = False,
    ) -> None:
        super().__init__()
        resolutions = [2**k for k in range(2, int(math.log2(img_resolution)) + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in resolutions}
        if min(channels.values()) < 1:
            raise ValueError(
                f"channel_base={channel_base} / channel_max={channel_max} leave no channels at "
                f"{img_resolution}x{img_resolution}; need channel_base >= img_resolution"
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


@GENERATORS.register("stylegan2", tags=("stylegan",))
class StyleGAN2Generator(Generator):
    """StyleGAN2 generator, pure PyTorch; Projected GAN defaults (z 64, w 128, 2 mapping layers).

    Skip architecture. ``w`` is ``(B, num_ws, w_dim)``; a ``(B, w_dim)`` w given to
    :meth:`synthesis` is broadcast to every layer.

    Style mixing: in training mode, with probability ``mixing_prob`` per sample, the layers from a
    random cutoff on take their w from a second z (same labels).
    """

    def __init__(
        self,
        img_resolution: int = 256,
        c_dim: int = 0,
        img_channels: int = 3,
        z_dim: int = 64,
        w_dim: int = 128,
        map_layers: int = 2,
        map_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.998,
        channel_base: int = 32768,
        channel_max: int = 512,
        mixing_prob: float = 0.0,
        conv_clamp: float | None = 256.0,
        fused_modconv: bool = False,
        noise_mode: str = "random",
    ) -> None:
        super().__init__(
            z_dim=z_dim,
            c_dim=c_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            noise_mode=noise_mode,
        )
        if not isinstance(w_dim, int) or w_dim < 1:
            raise ValueError(f"w_dim must be a positive int, got {w_dim!r}")
        if not 0.0 <= mixing_prob <= 1.0:
            raise ValueError(f"mixing_prob must be in [0, 1], got {mixing_prob!r}")
        self.w_dim = w_dim
        self.mixing_prob = float(mixing_prob)
        self.synthesis_network = SynthesisNetwork(
            w_dim,
            img_resolution,
            img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            conv_clamp=conv_clamp,
            fused=fused_modconv,
        )
        self.num_ws = self.synthesis_network.num_ws
        self.mapping_network = MappingNetwork(
            z_dim,
            c_dim,
            w_dim,
            self.num_ws,
            num_layers=map_layers,
            lr_multiplier=map_lr_multiplier,
            w_avg_beta=w_avg_beta,
        )

    def mapping(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        update_w_avg: bool = True,
    ) -> Tensor:
        """``z`` ``(B, z_dim)`` -> ws ``(B, num_ws, w_dim)``; updates ``w_avg`` in training mode."""
        self._check_z(z)
        c = self._check_labels(c, z.shape[0])
        return self.mapping_network(z, c, truncation_psi, update_w_avg=update_w_avg)

    def synthesis(self, w: Tensor, noise_mode: str | None = None) -> Tensor:
        """ws ``(B, num_ws, w_dim)`` or ``(B, w_dim)`` -> images ``(B, img_channels, R, R)``."""
        noise_mode = self._noise_mode(noise_mode)
        if w.ndim == 2 and w.shape[1] == self.w_dim:
            w = w[:, None, :].expand(-1, self.num_ws, -1)
        if w.ndim != 3 or w.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"w must have shape (B, num_ws={self.num_ws}, w_dim={self.w_dim}) or "
                f"(B, {self.w_dim}), got {tuple(w.shape)}"
            )
        return self.synthesis_network(w, noise_mode)

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str | None = None,
    ) -> Tensor:
        ws = self.mapping(z, c, truncation_psi)
        if self.training and self.mixing_prob > 0:
            ws = self._mix_styles(ws, z, c, truncation_psi)
        return self.synthesis(ws, noise_mode)

    def _mix_styles(self, ws: Tensor, z: Tensor, c: Tensor | None, truncation_psi: float) -> Tensor:
        # Per-sample cutoff as a mask (no host sync, no data-dependent slicing).
        b = z.shape[0]
        ws2 = self.mapping(torch.randn_like(z), c, truncation_psi, update_w_avg=False)
        mixed = torch.rand(b, device=z.device) < self.mixing_prob
        cutoff = torch.randint(1, self.num_ws, (b,), device=z.device)
        cutoff = torch.where(mixed, cutoff, torch.full_like(cutoff, self.num_ws))
        take_second = torch.arange(self.num_ws, device=z.device)[None, :] >= cutoff[:, None]
        return torch.where(take_second[:, :, None], ws2, ws)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, w_dim={self.w_dim}, num_ws={self.num_ws}, "
            f"mixing_prob={self.mixing_prob}"
        )


# The registered name, as the factory function it used to be.
stylegan2 = StyleGAN2Generator
