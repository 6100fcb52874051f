"""StyleGAN2 generator in pure PyTorch (no custom CUDA ops), with Projected GAN's defaults.

Mapping network z [+ class embedding] -> w (equalized learning rate, lr multiplier 0.01, tracked
``w_avg`` for truncation; :mod:`~projected_gan.generators.stylegan2_mapping`); synthesis from a
learned constant 4x4 (``4 x k`` for non-square sizes such as 64x96) through modulated,
demodulated 3x3 convolutions with per-layer noise, FIR-filtered x2 up-sampling and the skip
(toRGB) design
(:mod:`~projected_gan.generators.stylegan2_synthesis`, where the two formulations of the
modulated convolution are explained). This module puts them together, with style mixing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from projected_gan.generators.layers import Generator
from projected_gan.generators.stylegan2_mapping import EqualLinear, MappingNetwork
from projected_gan.generators.stylegan2_synthesis import (
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGB,
    fir_filter,
    modulated_conv2d,
    upsample_fir,
)
from projected_gan.registry import GENERATORS
from projected_gan.sizes import SizeLike

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


@GENERATORS.register("stylegan2", tags=("stylegan",))
class StyleGAN2Generator(Generator):
    """StyleGAN2, pure PyTorch, Projected GAN defaults (z 64, w 128); H x W to 4:1, 1-16 channels.

    ``img_resolution``: one side (32 ... 1024) or ``(H, W)`` with the short side one of those and
    the long side a multiple of a quarter of it, up to 4x (e.g. ``(64, 96)``, ``(32, 64)``);
    ``img_channels``: 1 to 16. Output ``(B, img_channels, H, W)``.

    Skip architecture. ``w`` is ``(B, num_ws, w_dim)``; a ``(B, w_dim)`` w given to
    :meth:`synthesis` is broadcast to every layer.

    Style mixing: in training mode, with probability ``mixing_prob`` per sample, the layers from a
    random cutoff on take their w from a second z (same labels).
    """

    def __init__(
        self,
        img_resolution: SizeLike = 256,
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
            self.img_size,
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
        """ws ``(B, num_ws, w_dim)`` or ``(B, w_dim)`` -> images ``(B, img_channels, H, W)``."""
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
