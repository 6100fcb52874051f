"""Adversarial losses and the R1 regulariser; importing this registers them.

DiffAugment moved to :mod:`projected_gan.augmentations`; its names are still reachable here for
one release (with a DeprecationWarning).
"""

import warnings as _warnings

from projected_gan.losses.adversarial import (
    AdversarialLoss,
    HingeLoss,
    LossOutput,
    LSGANLoss,
    NonSaturatingLoss,
)
from projected_gan.losses.r1 import R1Penalty

__all__ = [
    "AdversarialLoss",
    "HingeLoss",
    "LSGANLoss",
    "LossOutput",
    "NonSaturatingLoss",
    "R1Penalty",
]


def __getattr__(name: str):
    from projected_gan import augmentations

    if name in augmentations.__all__:
        _warnings.warn(
            f"projected_gan.losses.{name} moved to projected_gan.augmentations.{name}; "
            "the old path will be removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(augmentations, name)
    raise AttributeError(f"module 'projected_gan.losses' has no attribute {name!r}")
