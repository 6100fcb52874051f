"""Adaptive augmentation: StyleGAN2-ADA's overfitting controller around any augmentation.

Karras et al. (2020), "Training Generative Adversarial Networks with Limited Data": D's
overfitting is measured as ``r_t = E[sign(D(x_real))]`` and the augmentation probability ``p`` is
moved towards the value that keeps ``r_t`` at a target. :class:`OverfittingController` is that
controller alone (Diffusion-GAN's noise reuses it); in :class:`AdaptiveAugment` the whole inner
augmentation (a DiffAugment policy by default) is applied to a sample with probability ``p``.
Everything stays on the device, so the controller adds no host-device synchronisation to a
training step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from projected_gan.augmentations.diffaugment import DEFAULT_POLICY, DiffAugment, build_augment
from projected_gan.augmentations.op_base import check_images, uniform
from projected_gan.errors import PartBuildError
from projected_gan.registry import AUGMENTATIONS

__all__ = ["AdaptiveAugment", "OverfittingController", "inner_augment"]


def _number(value: Any, field: str) -> float:
    """``value`` as a finite float, else an error naming ``field`` (bools are no numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PartBuildError(f"{field} must be a finite number, got {value!r}", field=field)
    return float(value)


class OverfittingController(nn.Module):
    """ADA's controller (Karras et al. 2020): a probability ``p`` tuned from D's logits on reals.

    The training step finds it duck-typed (``accumulate``, ``adjust``, ``interval``, ``p``):
    it feeds D's real logits to :meth:`accumulate` and calls :meth:`adjust` every ``interval``
    steps. With ``r_t = E[sign(D(x_real))]`` over the reals seen since the last adjustment,
    ``p`` moves by ``sign(r_t - target) * images / (speed_kimg * 1000)``, clamped to
    ``[0, max_p]``. ``p`` and the two accumulators are buffers, so checkpoints hold them.
    Subclasses decide what ``p`` does.

    Args:
        target: the wanted r_t, in [0, 1].
        speed_kimg: kimg for p to go 0 -> 1 (> 0).
        interval: adjust p every this many training steps (>= 1).
        p: initial value, in [0, max_p].
        max_p: upper bound of p, in [0, 1].
    """

    def __init__(
        self,
        target: float = 0.6,
        speed_kimg: float = 500.0,
        interval: int = 4,
        p: float = 0.0,
        max_p: float = 1.0,
    ) -> None:
        super().__init__()
        self.target = _number(target, "target")
        if not 0.0 <= self.target <= 1.0:
            raise PartBuildError(f"target must be in [0, 1], got {target!r}", field="target")
        self.speed_kimg = _number(speed_kimg, "speed_kimg")
        if self.speed_kimg <= 0:
            raise PartBuildError(
                f"speed_kimg must be > 0 (thousands of images for p to go 0 -> 1), "
                f"got {speed_kimg!r}",
                field="speed_kimg",
            )
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise PartBuildError(
                f"interval must be an int >= 1 (training steps), got {interval!r}",
                field="interval",
            )
        self.interval = interval
        self.max_p = _number(max_p, "max_p")
        if not 0.0 <= self.max_p <= 1.0:
            raise PartBuildError(f"max_p must be in [0, 1], got {max_p!r}", field="max_p")
        if not 0.0 <= _number(p, "p") <= self.max_p:
            raise PartBuildError(f"p must be in [0, max_p={max_p!r}], got {p!r}", field="p")
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))
        self.register_buffer("sign_sum", torch.zeros((), dtype=torch.float32))
        self.register_buffer("count", torch.zeros((), dtype=torch.float32))

    @torch.no_grad()
    def accumulate(self, real_logits: Tensor) -> None:
        """Add the signs of D's logits on reals (any shape, e.g. ``(B, N)``) to the statistics;
        NaN logits are left out."""
        logits = real_logits.detach().float()
        # A NaN logit (a bad step, which the optimiser skips) says nothing about overfitting;
        # left out explicitly, as sign(NaN) is NaN in some torch builds and would stick in p.
        valid = ~logits.isnan()
        self.sign_sum.add_(logits.sign().where(valid, 0.0).sum())
        self.count.add_(valid.sum())

    @torch.no_grad()
    def adjust(self, batch_images: int, reduce: Callable[[Tensor], Any] | None = None) -> Tensor:
        """Move ``p`` once from the statistics since the last call, then clear them.

        Args:
            batch_images: real images seen since the last adjustment, over all processes
                (global batch x ``interval``).
            reduce: in place on the stacked ``(sign_sum, count)`` ``(2,)`` tensor, e.g. an
                all-reduce mean over processes (a mean or a sum gives the same ratio).

        Returns:
            ``r_t`` as a 0-dim float32 device tensor in [-1, 1] (0 when nothing was
            accumulated; then ``p`` stays put).
        """
        if isinstance(batch_images, bool) or not isinstance(batch_images, int) or batch_images < 1:
            raise ValueError(f"batch_images must be an int >= 1, got {batch_images!r}")
        stats = torch.stack([self.sign_sum, self.count])
        if reduce is not None:
            reduce(stats)
        sign_sum, count = stats.unbind()
        r_t = sign_sum / count.clamp(min=1.0)
        step = batch_images / (self.speed_kimg * 1000.0)
        # No statistics (count 0) must not read as "r_t = 0 < target": p then stays put.
        move = torch.sign(r_t - self.target) * (count > 0) * step
        self.p.add_(move).clamp_(0.0, self.max_p)
        self.sign_sum.zero_()
        self.count.zero_()
        return r_t

    def extra_repr(self) -> str:
        return (
            f"target={self.target}, speed_kimg={self.speed_kimg}, interval={self.interval}, "
            f"max_p={self.max_p}"
        )


def inner_augment(policy: str, augment: str | Mapping[str, Any] | None) -> nn.Module:
    """The augmentation a controller wraps: DiffAugment ``policy``, or ``augment`` (a registered
    name or ``{"name": ..., **kwargs}``) when given; never another controller."""
    if augment is None:
        return DiffAugment(policy)
    if policy != DEFAULT_POLICY:
        raise PartBuildError(
            f"give either policy ({policy!r}) or augment ({augment!r}), not both",
            field="augment",
        )
    # Two controllers would each move their own p from the same statistics, and the training
    # step drives only the outer one. Checked by name first, so the inner one is never built.
    name = augment.get("name") if isinstance(augment, Mapping) else augment
    factory = AUGMENTATIONS.get(name) if isinstance(name, str) and name in AUGMENTATIONS else None
    controller = isinstance(factory, type) and issubclass(factory, OverfittingController)
    inner = None if controller else build_augment(augment)
    if controller or isinstance(inner, OverfittingController):
        raise PartBuildError(
            f"augment: an adaptive augmentation cannot wrap another one ({augment!r})",
            field="augment",
        )
    return DiffAugment("") if inner is None else inner


@AUGMENTATIONS.register("adaptive")
class AdaptiveAugment(OverfittingController):
    """StyleGAN2-ADA (Karras et al. 2020): the whole inner augmentation per sample, with tuned p.

    Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data". Each
    sample gets the whole inner augmentation with probability ``p``, else passes unchanged (ADA's
    pipeline draws a probability per op instead). The training step feeds D's real logits to
    :meth:`accumulate` and calls :meth:`adjust` every ``interval`` steps: with
    ``r_t = E[sign(D(x_real))]`` over the reals seen since the last adjustment, ``p`` moves by
    ``sign(r_t - target) * images / (speed_kimg * 1000)``, clamped to ``[0, max_p]``.

    The defaults are ADA's: ``target`` 0.6, ``p`` from 0 to 1 in ``speed_kimg`` = 500 kimg at
    the fastest, an adjustment every 4 steps. A short run (a few kimg on a CPU) barely moves p
    at that speed: set ``speed_kimg`` to about a tenth of the run's ``train.kimg`` (e.g. 0.5 for
    a 5 kimg run) so p can reach 1 within the run.

    ``p`` and the two accumulators are buffers: they are in D's state dict, so checkpoints hold
    them and ``--resume`` continues with the same p. The recorded config keeps the *initial*
    ``p``. The inner augmentation runs on the whole batch whatever p is (picking samples would
    need their count on the host), so its cost does not shrink while p is small.

    Args:
        policy: DiffAugment policy, applied as a whole to a sample with probability p (ADA
            draws per op instead); used when ``augment`` is None.
        augment: instead of ``policy``, any registered augmentation: a name or
            ``{"name": ..., **kwargs}`` (not ``"adaptive"`` or ``"diffusion"``).
        target: the wanted r_t = E[sign(D(reals))], in [0, 1]; p rises while r_t is above it
            and falls while below (ADA: 0.6; lower = more augmentation).
        speed_kimg: kimg for p to go 0 -> 1 (> 0). ADA's 500 barely moves p in a short CPU
            run: set about a tenth of ``train.kimg`` (0.5 for a 5 kimg run).
        interval: adjust p every this many training steps (>= 1; ADA: 4).
        p: initial probability, in [0, max_p] (checkpoints hold the current one).
        max_p: upper bound of p, in [0, 1].

    Call as ``aug(x, generator=None)`` with ``x`` ``(B, C, H, W)`` float images (usually in
    [-1, 1]); the output has the same shape, dtype and memory format and is differentiable
    with respect to ``x``. The inner augmentation draws first, then the per-sample mask, so
    with ``p = 1`` a seeded generator gives exactly the inner augmentation's output.
    """

    def __init__(
        self,
        policy: str = DEFAULT_POLICY,
        augment: str | Mapping[str, Any] | None = None,
        target: float = 0.6,
        speed_kimg: float = 500.0,
        interval: int = 4,
        p: float = 0.0,
        max_p: float = 1.0,
    ) -> None:
        super().__init__(target=target, speed_kimg=speed_kimg, interval=interval, p=p, max_p=max_p)
        self.inner = inner_augment(policy, augment)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` ``(B, C, H, W)`` -> the inner augmentation on each sample with probability p."""
        check_images(x)
        augmented = self.inner(x, generator=generator)
        # p stays a device tensor: comparing on the device keeps the step free of host syncs.
        draw = uniform((x.shape[0], 1, 1, 1), 0.0, 1.0, x.device, generator)
        return torch.where(draw < self.p, augmented, x)
