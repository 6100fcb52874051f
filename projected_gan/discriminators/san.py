"""SAN heads: a discriminator's last linear layer split into a unit direction and a scale.

SAN (Slicing Adversarial Network; Takida et al., ICLR 2024, "SAN: Inducing Metrizability of GAN
with Discriminative Normalized Linear Layer") writes the discriminator as ``D(x) = <w, h(x)>``
with ``w = s * omega``, ``omega = w / ||w||`` of unit norm and ``s = ||w||``. The value is the
plain layer's, but a D step trains the parts on different objectives:

* ``fun = s * <omega.detach(), h(x)>``: the features ``h`` and the scale ``s`` get the usual GAN
  loss (e.g. hinge);
* ``dir = s.detach() * <omega, h(x).detach()>``: the direction ``omega`` gets the linear,
  Wasserstein-like objective ``max E_real[dir] - E_fake[dir]``.

The generator is trained on the plain logits. As in StyleSAN-XL (the authors' code on a
projected discriminator), the last 4x4 conv of each head is a :class:`SANConv2d` (normalised per
output channel; no bias, no spectral norm: the normalisation takes its place), and a conditional
head uses the unit-length class embedding as ``omega`` (:func:`san_project`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SANConv2d", "SplitLogits", "san_project"]

_EPS = 1e-12  # keeps a zero weight or embedding from dividing by zero


class SplitLogits(NamedTuple):
    """The two views of a SAN discriminator's logits for its own training step.

    ``fun`` and ``dir`` hold **equal values** (the plain logits); only their gradients differ.
    From a discriminator both are ``(B, N)``; from a single SAN layer they have its output shape.

    Attributes:
        fun: gradient reaches the features and the scale, not the direction: apply the base GAN
            loss (hinge, ...) to it.
        dir: gradient reaches only the direction: apply the linear objective
            ``-(mean(dir_real) - mean(dir_fake))`` to it.
    """

    fun: Tensor
    dir: Tensor


class SANConv2d(nn.Module):
    """Conv whose weight is used as scale ``s`` times unit direction ``omega`` (no bias).

    Each output channel's weight ``w_o`` (over ``in_channels x kh x kw``) gives
    ``s_o = ||w_o||`` and ``omega_o = w_o / s_o``; the plain output equals
    ``conv2d(x, w)``. One parameter ``weight`` ``(out_channels, in_channels, k, k)`` holds
    both parts, so the gradients of ``fun`` and ``dir`` add up in one tensor: radial (along
    ``w``) from ``fun``, tangential (orthogonal to ``w``) from ``dir``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as :class:`torch.nn.Conv2d`.

    ``forward(x, split=False)``: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H', W')``, or
    with ``split=True`` a :class:`SplitLogits` of two such maps.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
    ) -> None:
        super().__init__()
        # nn.Conv2d's own initialisation, without its bias
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def scale_and_direction(self) -> tuple[Tensor, Tensor]:
        """``s`` ``(out_channels,)`` and ``omega`` (shape of ``weight``, unit norm per channel)."""
        scale = self.weight.flatten(1).norm(dim=1).clamp_min(_EPS)
        return scale, self.weight / scale.view(-1, 1, 1, 1)

    def _conv(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, None, self.stride, self.padding)

    def forward(self, x: Tensor, split: bool = False) -> Tensor | SplitLogits:
        scale, omega = self.scale_and_direction()
        s = scale.view(1, -1, 1, 1)
        if not split:
            out = self._conv(x, omega)
            return out * s.to(out.dtype)  # the output's dtype: bf16 stays bf16 under autocast
        fun = self._conv(x, omega.detach())
        direction = self._conv(x.detach(), omega)
        return SplitLogits(fun * s.to(fun.dtype), direction * s.detach().to(direction.dtype))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


def san_project(
    h: Tensor, cmap: Tensor, split: bool = False, scale: float = 1.0
) -> Tensor | SplitLogits:
    """Conditional SAN logits: ``scale * <h, omega>`` with ``omega = cmap / ||cmap||``.

    The class embedding, normalised to unit length, plays the direction: ``fun`` lets the
    gradient reach ``h`` only, ``dir`` the embedding only.

    Args:
        h: features ``(B, C, H, W)`` (a head's last conv output).
        cmap: class embedding ``(B, C)``.
        split: return :class:`SplitLogits` instead of the plain logits.
        scale: constant factor (the heads use ``1 / sqrt(C)``).

    Returns:
        ``(B, H, W)``, or a :class:`SplitLogits` of two such maps.
    """
    # normalise in fp32 (the embedding may come out of autocast in bf16)
    omega = F.normalize(cmap.float(), dim=1, eps=_EPS).to(h.dtype)
    if not split:
        return torch.einsum("bchw,bc->bhw", h, omega) * scale
    fun = torch.einsum("bchw,bc->bhw", h, omega.detach()) * scale
    direction = torch.einsum("bchw,bc->bhw", h.detach(), omega) * scale
    return SplitLogits(fun, direction)
