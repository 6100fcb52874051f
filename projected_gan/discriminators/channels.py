"""What the frozen feature network sees of images with any number of channels.

A pretrained feature network takes 3 channels. :class:`~projected_gan.discriminators.
ProjectedDiscriminator` gives it the RGB view of ``(B, C, H, W)`` images, fixed
(:func:`projected_gan.images.rgb_view`) or learned (:func:`learned_rgb_map`, a trainable 1x1 conv
that starts as the fixed view), and, with ``extra_branch``, a second 3-channel view of the
channels beyond RGB (:class:`ExtraView`) that the same network sees as well.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from projected_gan.images import rgb_view
from projected_gan.projectors.heads import ProjectionHead

__all__ = [
    "EXTRA_SEED_OFFSET",
    "RGB_VIEWS",
    "ExtraView",
    "extra_projection_head",
    "fixed_rgb_weight",
    "learned_rgb_map",
    "rgb_input",
]

RGB_VIEWS = ("fixed", "learned")
# The extra branch's random projection (and channel map) is drawn from the RGB head's seed + this.
EXTRA_SEED_OFFSET = 100


def fixed_rgb_weight(channels: int) -> Tensor:
    """The ``(3, channels)`` matrix of :func:`~projected_gan.images.rgb_view`: C = 1, 2: the
    first channel to all three; C >= 3: the identity on channels 0-2, zeros after."""
    weight = torch.zeros(3, channels)
    if channels <= 2:
        weight[:, 0] = 1.0
    else:
        weight[:, :3] = torch.eye(3)
    return weight


def learned_rgb_map(channels: int) -> nn.Conv2d:
    """A trainable 1x1 conv ``(B, channels, H, W)`` -> ``(B, 3, H, W)`` (with bias, no norm),
    initialised to exactly the fixed RGB view: weight :func:`fixed_rgb_weight`, bias 0."""
    conv = nn.Conv2d(channels, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(fixed_rgb_weight(channels).view(3, channels, 1, 1))
        conv.bias.zero_()
    return conv


class ExtraView(nn.Module):
    """Channels 3..C-1 of ``(B, C, H, W)`` images as a ``(B, 3, H, W)`` view, fixed (frozen).

    One extra channel: replicated; two: the two, then their mean; three: as they are; more: a
    random map to 3 channels with orthonormal rows (each output a unit-norm mix of the extra
    channels, the three mixes orthogonal), drawn from ``seed`` and kept in the state dict as the
    buffer ``mix`` ``(3, C - 3)``.

    Args:
        extra_channels: ``C - 3``, at least 1.
        seed: seed of the random map (only drawn for more than 3 extra channels).
    """

    def __init__(self, extra_channels: int, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(extra_channels, int) or extra_channels < 1:
            raise ValueError(f"extra_channels must be an int >= 1, got {extra_channels!r}")
        self.extra_channels, self.seed = extra_channels, int(seed)
        if extra_channels > 3:
            gaussian = torch.randn(
                extra_channels, 3, generator=torch.Generator().manual_seed(self.seed)
            )
            q, r = torch.linalg.qr(gaussian)  # (E, 3), orthonormal columns
            q = q * torch.sign(torch.diagonal(r)).view(1, 3)  # unique: the same map everywhere
            self.register_buffer("mix", q.T.contiguous())

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3 + extra_channels, H, W)`` -> ``(B, 3, H, W)``, same dtype."""
        extra = x[:, 3:]
        if extra.shape[1] != self.extra_channels:
            raise ValueError(
                f"ExtraView expects {3 + self.extra_channels} channels, got {x.shape[1]}"
            )
        if self.extra_channels == 1:
            return extra.expand(-1, 3, -1, -1)
        if self.extra_channels == 2:
            return torch.cat([extra, extra.mean(1, keepdim=True)], 1)
        if self.extra_channels == 3:
            return extra
        return torch.einsum("oc,bchw->bohw", self.mix.to(extra.dtype), extra)

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra_channels}, seed={self.seed}"


def extra_projection_head(head: ProjectionHead, seed: int) -> ProjectionHead:
    """A copy of ``head`` for the extra branch: same kind and shape, its random projection
    redrawn from ``seed`` (heads with a ``seed`` and ``reset_projection()``, as CCM and CCM+CSM;
    others, e.g. ``none``, are copied as they are)."""
    twin = copy.deepcopy(head)
    if hasattr(twin, "seed") and callable(getattr(twin, "reset_projection", None)):
        twin.seed = int(seed)
        twin.reset_projection()
    return twin


def rgb_input(x: Tensor, rgb_map: nn.Module | None) -> Tensor:
    """The 3 channels the feature network sees: ``rgb_map(x)`` when learned, else the fixed
    :func:`~projected_gan.images.rgb_view`."""
    return rgb_view(x) if rgb_map is None else rgb_map(x)
