"""StyleGAN2's mapping network: z [+ class embedding] -> w, with equalized learning rate.

:class:`EqualLinear` is also the synthesis layers' style affine. The tracked ``w_avg`` is what
truncation pulls towards.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from projected_gan.generators.layers import LabelEmbedding, normalize_2nd_moment

__all__ = ["LRELU_GAIN", "EqualLinear", "MappingNetwork"]

LRELU_GAIN = math.sqrt(2.0)  # StyleGAN2's gain after leaky ReLU(0.2): ReLU's He gain


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
            x = F.leaky_relu(x, 0.2) * LRELU_GAIN
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
