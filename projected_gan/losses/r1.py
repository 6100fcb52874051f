"""R1 gradient penalty on real images (Mescheder et al., 2018), with lazy regularisation.

Projected GAN trains without it; it is here for StyleGAN2-style setups and is off unless a spec
turns it on.

Lazy regularisation (StyleGAN2): the penalty is evaluated only every ``interval`` D steps. To keep
its average strength, backpropagate ``interval * penalty`` on those steps, which is what
:meth:`R1Penalty.lazy_penalty` returns; StyleGAN2 also scales D's Adam learning rate by
``interval / (interval + 1)`` and raises its betas to that power (:attr:`R1Penalty.mb_ratio`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from projected_gan.registry import LOSSES

__all__ = ["R1Penalty"]


@LOSSES.register("r1", tags=("regularizer",))
class R1Penalty:
    """R1 penalty gamma/2 * E[||grad_x D(x)||^2] on reals, applied every `interval` D steps."""

    def __init__(self, gamma: float = 10.0, interval: int = 16) -> None:
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0 (0 turns R1 off), got {gamma!r}")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be an int >= 1 (D steps between R1), got {interval!r}")
        self.gamma = float(gamma)
        self.interval = interval

    @property
    def mb_ratio(self) -> float:
        """StyleGAN2's optimiser correction for lazy regularisation: interval / (interval + 1)."""
        return self.interval / (self.interval + 1)

    def should_apply(self, step: int) -> bool:
        """Whether D step ``step`` (0-based) computes the penalty; never when gamma is 0."""
        return self.gamma > 0 and step % self.interval == 0

    def penalty(self, real_images: Tensor, real_logits: Tensor) -> Tensor:
        """gamma/2 * mean over the batch of ||d sum(logits) / d image||^2, a 0-dim fp32 tensor.

        Args:
            real_images: ``(B, C, H, W)`` reals that had ``requires_grad_(True)`` set *before*
                D's forward pass (the gradient is taken with respect to exactly this tensor).
            real_logits: D's logits for them, ``(B, N)``; summed over N per sample.

        The graph is kept (``create_graph=True``) so the penalty can be backpropagated into D.
        """
        if not isinstance(real_images, Tensor) or not real_images.requires_grad:
            raise ValueError(
                "real_images must be the tensor D was run on, with requires_grad_(True) set "
                "before D's forward pass"
            )
        if not isinstance(real_logits, Tensor) or not real_logits.requires_grad:
            raise ValueError("real_logits must be D's output for real_images, still in the graph")
        (grad,) = torch.autograd.grad(
            real_logits.float().sum(), real_images, create_graph=True, allow_unused=True
        )
        if grad is None:
            raise ValueError("real_logits do not depend on real_images: pass D's input tensor")
        # Per-sample squared norm over (C, H, W), then the batch mean.
        norms = grad.float().square().flatten(1).sum(1)
        return norms.mean() * (self.gamma / 2)

    def lazy_penalty(self, real_images: Tensor, real_logits: Tensor) -> Tensor:
        """``interval * penalty``: what to backpropagate on the steps where R1 is applied."""
        return self.penalty(real_images, real_logits) * self.interval

    def __repr__(self) -> str:
        return f"R1Penalty(gamma={self.gamma}, interval={self.interval})"
