"""Diffusion-GAN: Gaussian diffusion noise on D's inputs, its depth tuned by ADA's controller.

Wang et al. (ICLR 2023), "Diffusion-GAN: Training GANs with Diffusion". D sees
``x_t = sqrt(abar_t) * x + sqrt(1 - abar_t) * noise_std * eps`` for a random timestep ``t``
drawn per (sample, channel); the largest timestep ``T`` grows and shrinks with a probability
``p`` that :class:`~projected_gan.augmentations.adaptive.OverfittingController` moves from D's
overfitting, as ADA moves its augmentation probability. Their Diffusion-ProjectedGAN diffuses
the frozen feature network's maps, before the random projection, which is this part's default
(``where="features"``); :class:`~projected_gan.discriminators.ProjectedDiscriminator` finds the
hook through :attr:`DiffusionAugment.feature_noise_stage` and :meth:`DiffusionAugment.noise`.

Everything is computed on the device from the ``p`` buffer (``T``, the schedule, the draws), so
the noise adds no host-device synchronisation to a training step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from projected_gan.augmentations.adaptive import OverfittingController, inner_augment
from projected_gan.augmentations.diffaugment import DEFAULT_POLICY
from projected_gan.augmentations.op_base import check_images, uniform
from projected_gan.errors import PartBuildError
from projected_gan.registry import AUGMENTATIONS

__all__ = ["DIFFUSION_WHERE", "DiffusionAugment"]

DIFFUSION_WHERE = ("features", "projected", "images")
_SLOTS = 64  # the official code's table of timesteps: round(p * 64) of 64 slots diffused


def _int(value: Any, field: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PartBuildError(f"{field} must be an int >= {low}, got {value!r}", field=field)
    return value


def _real(value: Any, field: str, low: float, high: float, what: str) -> float:
    """``value`` as a float in [low, high], else an error naming ``field``."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise PartBuildError(f"{field} must be {what}, got {value!r}", field=field)
    return float(value)


@AUGMENTATIONS.register("diffusion")
class DiffusionAugment(OverfittingController):
    """Diffusion-GAN (Wang et al., ICLR 2023): Gaussian diffusion noise on D's inputs, adaptive T.

    Wang et al. 2023, "Diffusion-GAN: Training GANs with Diffusion", as in their
    Diffusion-ProjectedGAN: the image first gets the inner augmentation (DiffAugment
    ``color,translation,cutout``), then every map at ``where`` is diffused,
    ``x_t = sqrt(abar_t) * x + sqrt(1 - abar_t) * noise_std * eps`` with ``eps ~ N(0, 1)``. D is
    not told ``t``. The betas rise linearly from ``beta_start`` to ``beta_end`` over
    ``T = t_min + round(p * (t_max - t_min))`` steps, ``abar_t = prod_{k <= t} (1 - beta_k)``
    and ``abar_0 = 1``: the schedule is stretched as T grows.

    Each (sample, channel) of a map draws its own t: with probability
    ``min(round(p * 64) / 64, max_diffused)`` a t in 1..T with P(t) proportional to t - 1 (deep
    noise favoured; t = 1 never drawn), else t = 0 (unchanged). The official code keeps a table
    of 64 slots holding such draws, redrawn at each adjustment, and each element picks a slot;
    here every element draws directly from the same marginal distribution.

    ``p`` is moved by ADA's controller (see ``adaptive``): every ``interval`` steps by
    ``sign(r_t - target) * images / (speed_kimg * 1000)``. ``p``, and so ``T``, is a buffer in
    D's state dict: checkpoints hold it and ``--resume`` continues with it.

    Args:
        policy: DiffAugment policy on the image before the noise (Diffusion-ProjectedGAN:
            ``color,translation,cutout``); ``""`` for none. Used when ``augment`` is None.
        augment: instead of ``policy``, any registered augmentation: a name or
            ``{"name": ..., **kwargs}`` (not ``"adaptive"`` or ``"diffusion"``).
        where: ``"features"``: the feature network's maps, before the projection head
            (Diffusion-ProjectedGAN's default); ``"projected"``: the head's outputs (their
            other option); ``"images"``: the image after the inner augmentation, as plain
            Diffusion-GAN does, but without giving D the timestep.
        t_min: smallest T, an int >= 2 (Diffusion-GAN: 5).
        t_max: largest T, an int >= t_min (Diffusion-GAN: 500).
        beta_start: first beta of the linear schedule, in (0, beta_end] (Diffusion-GAN: 1e-4).
        beta_end: last beta (at t = T), in [beta_start, 1) (Diffusion-GAN: 1e-2).
        noise_std: scale of the Gaussian noise, >= 0 (Diffusion-GAN: 0.5).
        max_diffused: largest share of diffused (sample, channel) pairs, in [0, 1]
            (Diffusion-GAN: 48 of 64 slots, 0.75).
        target: the wanted r_t = E[sign(D(reals))], in [0, 1] (Diffusion-GAN: 0.6).
        speed_kimg: kimg for p to go 0 -> 1, > 0 (Diffusion-GAN's ada_kimg: 100); in a short
            CPU run set about a tenth of ``train.kimg``.
        interval: adjust p every this many training steps, >= 1 (Diffusion-GAN: 4).
        p: initial p, in [0, max_p] (Diffusion-GAN: 0); checkpoints hold the current one.
        max_p: upper bound of p, in [0, 1].

    Call as ``aug(x, generator=None)`` with ``x`` ``(B, C, H, W)`` float images (usually in
    [-1, 1]): the inner augmentation, then the noise when ``where="images"``. Same shape and
    dtype out, differentiable with respect to ``x``.
    """

    def __init__(
        self,
        policy: str = DEFAULT_POLICY,
        augment: str | Mapping[str, Any] | None = None,
        where: str = "features",
        t_min: int = 5,
        t_max: int = 500,
        beta_start: float = 1e-4,
        beta_end: float = 1e-2,
        noise_std: float = 0.5,
        max_diffused: float = 0.75,
        target: float = 0.6,
        speed_kimg: float = 100.0,
        interval: int = 4,
        p: float = 0.0,
        max_p: float = 1.0,
    ) -> None:
        super().__init__(target=target, speed_kimg=speed_kimg, interval=interval, p=p, max_p=max_p)
        if where not in DIFFUSION_WHERE:
            raise PartBuildError(
                f"where must be one of {', '.join(DIFFUSION_WHERE)}, got {where!r}", field="where"
            )
        self.where = where
        # t = 2 must be possible: P(t) is proportional to t - 1, which is 0 everywhere for T = 1.
        self.t_min = _int(t_min, "t_min", 2)
        self.t_max = _int(t_max, "t_max", self.t_min)
        self.beta_end = _real(beta_end, "beta_end", 0.0, 1.0, "a number in (0, 1)")
        if self.beta_end in (0.0, 1.0):
            raise PartBuildError(f"beta_end must be in (0, 1), got {beta_end!r}", field="beta_end")
        self.beta_start = _real(
            beta_start, "beta_start", 0.0, self.beta_end, f"in (0, beta_end={beta_end!r}]"
        )
        if self.beta_start == 0.0:
            raise PartBuildError(
                f"beta_start must be > 0 (a zero beta adds no noise), got {beta_start!r}",
                field="beta_start",
            )
        self.noise_std = _real(noise_std, "noise_std", 0.0, math.inf, "a finite number >= 0")
        self.max_diffused = _real(max_diffused, "max_diffused", 0.0, 1.0, "in [0, 1]")
        self.inner = inner_augment(policy, augment)

    @property
    def feature_noise_stage(self) -> str | None:
        """Where a discriminator must call :meth:`noise`: ``"features"`` (the feature network's
        maps), ``"projected"`` (the projection head's outputs) or None (done in forward)."""
        return None if self.where == "images" else self.where

    @property
    def T(self) -> Tensor:  # the paper's name
        """The current largest timestep, ``t_min + round(p * (t_max - t_min))``: a 0-dim int64
        device tensor in [t_min, t_max] (p in float32, rounding half to even as Python does)."""
        span = torch.round(self.p * (self.t_max - self.t_min)).long()
        return (self.t_min + span).clamp(self.t_min, self.t_max)

    def alphas_bar(self) -> Tensor:
        """``abar_t`` for t = 0..t_max under the current T: ``(t_max + 1,)`` float32 in (0, 1].

        Entry 0 is 1; entries past T keep beta_end (never used: t <= T).
        """
        k = torch.arange(1, self.t_max + 1, device=self.p.device, dtype=torch.float32)
        # beta_k evenly spaced from beta_start (k = 1) to beta_end (k = T), ends included.
        frac = ((k - 1) / (self.T - 1).float()).clamp(max=1.0)
        betas = self.beta_start + (self.beta_end - self.beta_start) * frac
        # A sum of logs, not a product: the same in exact arithmetic, steadier in float32.
        log_abar = torch.cumsum(torch.log1p(-betas), dim=0)
        return torch.cat([log_abar.new_zeros(1), log_abar]).exp()

    def diffused_share(self) -> Tensor:
        """Probability that a (sample, channel) pair is diffused, ``min(round(p * 64) / 64,
        max_diffused)``: a 0-dim float32 device tensor in [0, max_diffused]."""
        return (torch.round(self.p * _SLOTS) / _SLOTS).clamp(max=self.max_diffused)

    def timesteps(
        self, shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw t for each element of ``shape`` (e.g. ``(B, C)``): int64 in [0, T] on ``device``.

        Two uniform draws of ``shape`` from ``generator``: first whether the element is
        diffused, then its t by inverting the CDF of P(t) proportional to t - 1 on 1..T.
        """
        diffused = uniform(shape, 0.0, 1.0, device, generator) < self.diffused_share().to(device)
        u = uniform(shape, 0.0, 1.0, device, generator)
        T = self.T.to(device)
        i = torch.arange(self.t_max + 1, device=device, dtype=torch.float32)
        # CDF at t = i: sum_{k <= i} (k - 1) / sum_{k <= T} (k - 1) = i (i - 1) / (T (T - 1)),
        # exact in float32 (integers below 2^24); 1 from T on, so no draw lands past T.
        tf = T.float()
        cdf = torch.where(i >= tf, 1.0, i * (i - 1) / (tf * (tf - 1)))
        # t = the number of CDF entries <= u: P(t) = cdf[t] - cdf[t - 1] (t = 0, 1 never).
        t = torch.searchsorted(cdf, u.contiguous(), right=True)
        return torch.where(diffused, t, 0)

    def noise(
        self, x: Tensor, generator: torch.Generator | None = None, t: Tensor | None = None
    ) -> Tensor:
        """Diffuse ``x`` ``(B, C, H, W)`` (any float map) with a t per (sample, channel).

        Args:
            x: images or feature maps, any float dtype and range.
            generator: draws ``t`` (see :meth:`timesteps`), then ``eps`` ``(B, C, H, W)``
                (``torch.randn`` on the generator's device).
            t: ``(B, C)`` int64 timesteps in [0, t_max] instead of drawing them (then only
                ``eps`` is drawn).

        Returns:
            ``sqrt(abar_t) * x + sqrt(1 - abar_t) * noise_std * eps``: same shape, dtype and
            memory format as ``x``, differentiable with respect to ``x``; exactly ``x`` where
            t = 0.
        """
        check_images(x)
        b, c = x.shape[:2]
        if t is None:
            t = self.timesteps((b, c), x.device, generator)
        abar = self.alphas_bar().to(x.device)[t.to(x.device)].view(b, c, 1, 1)
        scale = abar.sqrt().to(x.dtype)
        spread = ((1.0 - abar).sqrt() * self.noise_std).to(x.dtype)
        src = generator.device if generator is not None else x.device
        eps = torch.randn(x.shape, generator=generator, device=src)
        # In x's layout (channels_last stays channels_last).
        eps = torch.empty_like(x).copy_(eps)
        return x * scale + eps * spread

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` ``(B, C, H, W)`` -> the inner augmentation, then the noise if where="images"."""
        check_images(x)
        x = self.inner(x, generator=generator)
        return self.noise(x, generator) if self.where == "images" else x

    def extra_repr(self) -> str:
        return (
            f"where={self.where!r}, t_min={self.t_min}, t_max={self.t_max}, "
            f"beta_start={self.beta_start}, beta_end={self.beta_end}, "
            f"noise_std={self.noise_std}, max_diffused={self.max_diffused}, " + super().extra_repr()
        )
