"""Gradient penalties on D's input: R1 on reals and R2 on fakes, with lazy regularisation.

R1 (Mescheder et al., 2018) penalises D's gradient on real images, R2 the same on generated ones;
R3GAN (Huang et al., 2024) uses both with the relativistic pairing loss. Projected GAN trains
without either; both are off unless a spec turns them on. On a projected discriminator the
gradient is taken with respect to the image, through the augmentation and the frozen feature
network: a double backward through that network, which is what makes them costly here.

Lazy regularisation (StyleGAN2): the penalties are evaluated only every ``interval`` D steps. To
keep their average strength, backpropagate ``interval * penalty`` on those steps, which is what
:meth:`GradientPenalty.lazy` returns; StyleGAN2 also scales D's Adam learning rate by
``interval / (interval + 1)`` and raises its betas to that power (:attr:`GradientPenalty.mb_ratio`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from projected_gan.registry import LOSSES

__all__ = ["GradientPenalty", "gradient_penalty"]


def gradient_penalty(images: Tensor, logits: Tensor, gamma: float) -> Tensor:
    """gamma/2 * mean over the batch of ||d sum(logits) / d image||^2, a 0-dim fp32 tensor.

    Args:
        images: ``(B, C, H, W)`` images that had ``requires_grad_(True)`` set *before* D's
            forward pass (the gradient is taken with respect to exactly this tensor).
        logits: D's logits for them, ``(B, N)``; summed over N per sample.
        gamma: the weight.

    The graph is kept (``create_graph=True``) so the penalty can be backpropagated into D.
    """
    if not isinstance(images, Tensor) or not images.requires_grad:
        raise ValueError(
            "images must be the tensor D was run on, with requires_grad_(True) set before D's "
            "forward pass"
        )
    if not isinstance(logits, Tensor) or not logits.requires_grad:
        raise ValueError("logits must be D's output for the images, still in the graph")
    total = logits.float().sum()
    (grad,) = torch.autograd.grad(total, images, create_graph=True, allow_unused=True)
    if grad is None:
        raise ValueError("the logits do not depend on the images: pass D's input tensor")
    # Per-sample squared norm over (C, H, W), then the batch mean.
    return grad.float().square().flatten(1).sum(1).mean() * (gamma / 2)


def _gamma(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0 (0 turns it off), got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


@LOSSES.register("gradient_penalty", tags=("regularizer",))
class GradientPenalty:
    """R1 (Mescheder et al. 2018) on reals and R2 (R3GAN, Huang et al. 2024) on fakes, lazily.

    Args:
        r1_gamma: weight of R1, gamma/2 * E[||grad_x D(x)||^2] over reals; 0 = off
            (StyleGAN2's default for 256 px FFHQ is 1, its paper's 10).
        r2_gamma: weight of R2, the same on fakes; 0 = off (R3GAN sets it equal to r1_gamma).
        interval: D steps between evaluations (StyleGAN2: 16; R3GAN: 1, every step).
    """

    def __init__(self, r1_gamma: float = 10.0, r2_gamma: float = 0.0, interval: int = 16) -> None:
        self.r1_gamma = _gamma(r1_gamma, "r1_gamma")
        self.r2_gamma = _gamma(r2_gamma, "r2_gamma")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be an int >= 1 (D steps between), got {interval!r}")
        self.interval = interval

    @property
    def mb_ratio(self) -> float:
        """StyleGAN2's optimiser correction for lazy regularisation: interval / (interval + 1)."""
        return self.interval / (self.interval + 1)

    def should_apply(self, step: int) -> tuple[bool, bool]:
        """Whether D step ``step`` (0-based) computes (R1, R2); never one whose gamma is 0."""
        due = step % self.interval == 0
        return due and self.r1_gamma > 0, due and self.r2_gamma > 0

    def lazy(self, images: Tensor, logits: Tensor, on: str) -> Tensor:
        """``interval * penalty`` of ``on`` (``"r1"``: reals, ``"r2"``: fakes), to backpropagate
        on the steps where it is due."""
        gamma = {"r1": self.r1_gamma, "r2": self.r2_gamma}.get(on)
        if gamma is None:
            raise ValueError(f"on must be 'r1' (reals) or 'r2' (fakes), got {on!r}")
        return gradient_penalty(images, logits, gamma) * self.interval

    def __repr__(self) -> str:
        return (
            f"GradientPenalty(r1_gamma={self.r1_gamma}, r2_gamma={self.r2_gamma}, "
            f"interval={self.interval})"
        )
