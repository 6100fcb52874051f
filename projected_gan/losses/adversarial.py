"""Adversarial losses: hinge (Projected GAN's), non-saturating logistic, least squares and
the relativistic pairing loss (RpGAN, R3GAN's).

The trainer sends reals and fakes through D in separate passes (BatchNorm sees them apart, as in
the paper). A *separable* loss (``paired = False``) splits D's objective into a real and a fake
term, so each pass can be backpropagated on its own; ``d_loss`` is their sum. A *paired* loss
(``paired = True``) compares each real's logits with the fake's of the same index, so it is only
defined on both at once: ``d_loss(real, fake)`` and ``g_loss(fake, real)``; the trainer then also
runs D on reals (without autograd) in G's step.

SAN heads (Takida et al., 2024) give D's own step :class:`SplitLogits` ``(fun, dir)``: every
loss here then applies its terms to ``fun`` and adds SAN's linear objective on ``dir``,
``mean(dir_fake) - mean(dir_real)``, which trains the heads' last-layer directions.

Each term returns ``(loss, logs)``: a 0-dim float32 tensor to backpropagate and a dict of
detached 0-dim tensors for logging. Nothing calls ``.item()``, so the training loop can aggregate
on the device. Logits are ``(B, N)`` (any shape with at least one dimension works); every mean
runs over the batch and all logits. Logits are cast to float32 first, so bf16 logits are fine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from projected_gan.discriminators.san import SplitLogits
from projected_gan.registry import LOSSES

__all__ = [
    "AdversarialLoss",
    "HingeLoss",
    "LSGANLoss",
    "LossOutput",
    "NonSaturatingLoss",
    "RelativisticPairingLoss",
]

LossOutput = tuple[Tensor, dict[str, Tensor]]


def _float_logits(logits: object, name: str) -> Tensor:
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of shape (B, N), got {logits!r}")
    if logits.dim() == 0 or logits.numel() == 0:
        raise ValueError(f"{name} must have shape (B, N) with B, N >= 1, got {tuple(logits.shape)}")
    return logits.float()


def _split(logits: object, name: str) -> tuple[Tensor, Tensor | None]:
    """``(fun, dir)`` float32 logits of split (SAN) logits, or ``(logits, None)``."""
    if isinstance(logits, SplitLogits):
        return _float_logits(logits.fun, f"{name}.fun"), _float_logits(logits.dir, f"{name}.dir")
    return _float_logits(logits, name), None


def _direction_term(direction: Tensor | None, sign: float) -> Tensor | float:
    """SAN's linear objective on one side: ``sign * mean(dir)`` (-1 reals, +1 fakes), or 0."""
    return 0.0 if direction is None else sign * direction.mean()


class AdversarialLoss:
    """Base class: subclasses give the per-logit terms, means and logging are shared here.

    A paired loss sets ``paired = True`` and overrides :meth:`d_loss` and :meth:`g_loss`.
    """

    paired: bool = False

    def real_term(self, logits: Tensor) -> Tensor:
        """D's per-logit loss on reals (float32 logits in, same shape out)."""
        raise NotImplementedError

    def fake_term(self, logits: Tensor) -> Tensor:
        """D's per-logit loss on fakes."""
        raise NotImplementedError

    def generator_term(self, logits: Tensor) -> Tensor:
        """G's per-logit loss on fakes."""
        raise NotImplementedError

    def d_loss_real(self, real_logits: Tensor | SplitLogits) -> LossOutput:
        """D's loss on real logits ``(B, N)``: ``(scalar, {"d_real", "logits_real"})``."""
        logits, direction = _split(real_logits, "real_logits")
        loss = self.real_term(logits).mean() + _direction_term(direction, -1.0)
        return loss, {"d_real": loss.detach(), "logits_real": logits.detach().mean()}

    def d_loss_fake(self, fake_logits: Tensor | SplitLogits) -> LossOutput:
        """D's loss on fake logits ``(B, N)``: ``(scalar, {"d_fake", "logits_fake"})``."""
        logits, direction = _split(fake_logits, "fake_logits")
        loss = self.fake_term(logits).mean() + _direction_term(direction, 1.0)
        return loss, {"d_fake": loss.detach(), "logits_fake": logits.detach().mean()}

    def d_loss(
        self, real_logits: Tensor | SplitLogits, fake_logits: Tensor | SplitLogits
    ) -> LossOutput:
        """D's total loss, the sum of :meth:`d_loss_real` and :meth:`d_loss_fake`."""
        real, real_logs = self.d_loss_real(real_logits)
        fake, fake_logs = self.d_loss_fake(fake_logits)
        total = real + fake
        return total, {"d_loss": total.detach(), **real_logs, **fake_logs}

    def g_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> LossOutput:
        """G's loss on D's logits for fakes ``(B, N)``: ``(scalar, {"g_loss", "logits_gen"})``.

        ``real_logits`` are D's on reals of the same step: used by paired losses only.
        """
        logits = _float_logits(fake_logits, "fake_logits")
        loss = self.generator_term(logits).mean()
        return loss, {"g_loss": loss.detach(), "logits_gen": logits.detach().mean()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@LOSSES.register("hinge", tags=("adversarial",))
class HingeLoss(AdversarialLoss):
    """Hinge loss (Projected GAN default): D relu(1 - real) + relu(1 + fake), G -fake."""

    def real_term(self, logits: Tensor) -> Tensor:
        return F.relu(1.0 - logits)

    def fake_term(self, logits: Tensor) -> Tensor:
        return F.relu(1.0 + logits)

    def generator_term(self, logits: Tensor) -> Tensor:
        return -logits


@LOSSES.register("nonsaturating", aliases=("logistic",), tags=("adversarial",))
class NonSaturatingLoss(AdversarialLoss):
    """Non-saturating logistic loss: D softplus(-real) + softplus(fake), G softplus(-fake)."""

    # softplus(-l) = -log(sigmoid(l)), written this way so large |logits| never give inf.
    def real_term(self, logits: Tensor) -> Tensor:
        return F.softplus(-logits)

    def fake_term(self, logits: Tensor) -> Tensor:
        return F.softplus(logits)

    def generator_term(self, logits: Tensor) -> Tensor:
        return F.softplus(-logits)


@LOSSES.register("lsgan", tags=("adversarial",))
class LSGANLoss(AdversarialLoss):
    """Least-squares GAN loss (Mao et al.): D (real-1)^2/2 + fake^2/2, G (fake-1)^2/2."""

    def real_term(self, logits: Tensor) -> Tensor:
        return 0.5 * torch.square(logits - 1.0)

    def fake_term(self, logits: Tensor) -> Tensor:
        return 0.5 * torch.square(logits)

    def generator_term(self, logits: Tensor) -> Tensor:
        return 0.5 * torch.square(logits - 1.0)


@LOSSES.register("rpgan", aliases=("relativistic",), tags=("adversarial",))
class RelativisticPairingLoss(AdversarialLoss):
    """Relativistic pairing loss (RpGAN; Jolicoeur-Martineau 2019, R3GAN: Huang et al. 2024).

    Each real is paired with the fake of the same index (and logit position): D minimises
    ``softplus(fake - real)``, G minimises ``softplus(real - fake)`` with the reals' logits
    taken as constants. R3GAN pairs it with both R1 and R2 (``loss.r1_gamma`` and
    ``loss.r2_gamma`` in a spec). Paired: reals and fakes must hold the same number of logits.
    """

    paired = True

    def _pairs(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        if real.shape != fake.shape:
            raise ValueError(
                "the relativistic pairing loss pairs each real with one fake: real_logits "
                f"{tuple(real.shape)} and fake_logits {tuple(fake.shape)} must have one shape"
            )
        return real, fake

    def d_loss(
        self, real_logits: Tensor | SplitLogits, fake_logits: Tensor | SplitLogits
    ) -> LossOutput:
        """D's loss mean(softplus(fake - real)) over pairs (+ SAN's direction objective on
        split logits): ``(scalar, logs)``."""
        (real, real_dir), (fake, fake_dir) = (
            _split(real_logits, "real_logits"),
            _split(fake_logits, "fake_logits"),
        )
        real, fake = self._pairs(real, fake)
        loss = F.softplus(fake - real).mean()
        loss = loss + _direction_term(real_dir, -1.0) + _direction_term(fake_dir, 1.0)
        logs = {"d_loss": loss.detach(), "logits_real": real.detach().mean()}
        return loss, {**logs, "logits_fake": fake.detach().mean()}

    def g_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> LossOutput:
        """G's loss mean(softplus(real - fake)); the real logits get no gradient."""
        if real_logits is None:
            raise ValueError("the relativistic pairing loss needs real_logits for G's loss too")
        real = _float_logits(real_logits, "real_logits")
        real, fake = self._pairs(real, _float_logits(fake_logits, "fake_logits"))
        loss = F.softplus(real.detach() - fake).mean()
        return loss, {"g_loss": loss.detach(), "logits_gen": fake.detach().mean()}

    def _separable(self) -> TypeError:
        return TypeError(
            "the relativistic pairing loss has no separate real and fake terms: call "
            "d_loss(real_logits, fake_logits)"
        )

    def d_loss_real(self, real_logits: Tensor) -> LossOutput:
        raise self._separable()

    def d_loss_fake(self, fake_logits: Tensor) -> LossOutput:
        raise self._separable()
