"""The projector: a frozen feature network F followed by a fixed random projection head P."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from projected_gan.projectors.feature_networks import FEATURE_NETWORK_CONTRACT, FeatureNetwork
from projected_gan.projectors.heads import NoProjection, ProjectionHead
from projected_gan.sizes import Size, SizeLike

__all__ = ["Projector"]


class Projector(nn.Module):
    """``head(feature_network(x))``: image in [-1, 1] -> list of projected feature maps, frozen.

    Nothing in it is trainable and it stays in eval mode through ``.train()``.

    Args:
        feature_network: a :class:`FeatureNetwork` (normalisation and resize rule inside).
        head: a :class:`ProjectionHead` built from the network's ``channels``/``reductions``;
            None = no projection.

    Attributes:
        channels, reductions: of the output maps (reductions relative to the image the feature
            network sees, i.e. after its resize rule).
    """

    def __init__(self, feature_network: FeatureNetwork, head: ProjectionHead | None = None) -> None:
        super().__init__()
        if not isinstance(feature_network, FeatureNetwork):
            raise TypeError(
                f"feature_network must be a FeatureNetwork, got {type(feature_network).__name__}: "
                f"{FEATURE_NETWORK_CONTRACT}"
            )
        if head is None:
            head = NoProjection(feature_network.channels, feature_network.reductions)
        if not isinstance(head, ProjectionHead):
            raise TypeError(
                "head must be a projected_gan.projectors.ProjectionHead or None, got "
                f"{type(head).__name__}"
            )
        if tuple(head.in_channels) != tuple(feature_network.channels):
            raise ValueError(
                f"head expects feature channels {head.in_channels} but the feature network "
                f"gives {feature_network.channels}; build the head from the network's channels"
            )
        self.feature_network = feature_network
        self.head = head
        self.requires_grad_(False)
        self.train(False)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self.head.channels)

    @property
    def reductions(self) -> tuple[float, ...]:
        return tuple(self.head.reductions)

    def seen_size(self, image_size: SizeLike) -> Size:
        """``(h, w)`` of the image the feature network sees for an input of ``image_size`` (one
        side or ``(H, W)``): its resize rule."""
        return self.feature_network.seen_size(image_size)

    def output_sizes(self, image_size: SizeLike) -> tuple[Size, ...]:
        """``(h, w)`` of each output map for an input of ``image_size`` (no forward pass)."""
        return self.head.output_sizes(self.feature_network.output_sizes(image_size))

    def train(self, mode: bool = True) -> Projector:
        """Always eval: F and P are frozen."""
        return super().train(False)

    def forward(
        self, x: Tensor, between: Callable[[list[Tensor]], list[Tensor]] | None = None
    ) -> list[Tensor]:
        """``x`` ``(B, 3, H, W)`` in [-1, 1] -> list of ``(B, channels[i], h_i, w_i)``.

        ``between``, if given, maps the feature network's list of maps to the list the head
        gets (same shapes), e.g. Diffusion-GAN's noise before the projection.
        """
        features = self.feature_network(x)
        if between is not None:
            features = between(features)
        return self.head(features)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reductions={self.reductions}"
