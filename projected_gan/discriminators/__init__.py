"""Discriminators: multi-scale heads on projected features and the composable wrapper.

Importing this package registers the built-in ``discriminators`` (``multiscale``).
"""

from projected_gan.discriminators.multiscale import (
    CHANNEL_TABLE,
    DownBlock,
    MultiScaleDiscriminator,
    ScaleDiscriminator,
    SeparableDownBlock,
)
from projected_gan.discriminators.projected import ProjectedDiscriminator
from projected_gan.discriminators.san import SANConv2d, SplitLogits, san_project

__all__ = [
    "CHANNEL_TABLE",
    "DownBlock",
    "MultiScaleDiscriminator",
    "ProjectedDiscriminator",
    "SANConv2d",
    "ScaleDiscriminator",
    "SeparableDownBlock",
    "SplitLogits",
    "san_project",
]
