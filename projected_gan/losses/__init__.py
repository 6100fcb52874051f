"""Adversarial losses and the gradient penalties (R1, R2); importing this registers them."""

from projected_gan.losses.adversarial import (
    AdversarialLoss,
    HingeLoss,
    LossOutput,
    LSGANLoss,
    NonSaturatingLoss,
    RelativisticPairingLoss,
)
from projected_gan.losses.penalties import GradientPenalty, gradient_penalty

__all__ = [
    "AdversarialLoss",
    "GradientPenalty",
    "HingeLoss",
    "LSGANLoss",
    "LossOutput",
    "NonSaturatingLoss",
    "RelativisticPairingLoss",
    "gradient_penalty",
]
