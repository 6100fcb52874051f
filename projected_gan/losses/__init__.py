"""Adversarial losses and the R1 regulariser; importing this registers them."""

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
