"""One training step: a G phase, a D phase (with lazy R1/R2), then EMA, all on the device.

:class:`TrainingStep` owns the networks (G, D, G_ema), their fused Adam optimisers, the latent
stream and the device-side tick accumulators. A step is, as in the official code::

    g_phase  -> G gets gradients through the frozen projector; D's heads get none
    d_phase  -> D on fakes (no autograd through G) and reals (+ R1 on reals, R2 on fakes,
                every ``interval`` steps)
    EMA      -> G_ema moves towards G

Micro-batches (``train.batch_gpu``): each phase runs over chunks of ``batch_gpu`` samples whose
gradients accumulate, each chunk's mean loss weighted by chunk/batch so the sum is the batch
mean, then takes one optimiser step. BatchNorm therefore normalises over one chunk, as the
official code's ``--batch-gpu`` does. Latents are drawn for the whole batch first, so the stream
(and the run) does not depend on the chunk size apart from BatchNorm.

Hot-loop rules: nothing here waits for the GPU. Losses are summed into device accumulators
(read once per tick by the fit loop), and a non-finite gradient makes the fused Adam kernel
skip its update on the device (``found_inf``), counted in ``bad_run``/``bad_tick``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

from projected_gan import distributed
from projected_gan.discriminators import SplitLogits
from projected_gan.images import to_float
from projected_gan.precision import resolve_precision
from projected_gan.spec import ExperimentSpec

__all__ = ["LATENT_SEED_OFFSET", "TrainingStep", "ema_beta", "match_state_layout"]

# The latents' generator is seeded apart from the global RNG, so their streams never coincide.
LATENT_SEED_OFFSET = 1_000_003


def ema_beta(batch: int, nimg: int, ema_kimg: float, rampup: float | None) -> float:
    """Per-step EMA decay for a half-life of ``ema_kimg`` thousand images (with ramp-up)."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None and rampup > 0:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


def fused_adam(params: list[nn.Parameter], lr: float, betas: tuple, eps: float) -> Any:
    """Adam with the fused kernel, which skips a step on the device when ``found_inf`` is set."""
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True)


def match_state_layout(opt: torch.optim.Optimizer) -> None:
    """Give loaded moment buffers their parameter's strides (e.g. channels_last).

    Checkpoints store contiguous tensors; the fused Adam kernel walks a parameter and its moments
    element by element, so a contiguous moment next to a channels_last weight would pair the
    wrong elements.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for key, value in state.items():
                if (
                    torch.is_tensor(value)
                    and value.shape == p.shape
                    and value.stride() != p.stride()
                ):
                    state[key] = torch.empty_like(p).copy_(value)


def plain_logits(out: Any) -> torch.Tensor:
    """D's logits ``(B, N)`` from its output: the ``fun`` part of split (SAN) logits, which has
    the plain logits' values and their gradient with respect to the input."""
    return out.fun if isinstance(out, SplitLogits) else out


def logit_stats(loss_logs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mean-logit entries of a loss's log dict (its loss values are logged already)."""
    return {k: v for k, v in loss_logs.items() if k.startswith("logits")}


@torch.no_grad()
def sign_stats(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """D's overfitting signals from its logits ``(B, N)``: ``rt`` = E[sign(D(real))] in
    [-1, 1] (StyleGAN2-ADA's r_t) and ``d_accuracy``, the share of logits on the right side of 0
    (reals > 0, fakes < 0)."""
    real, fake = real_logits.detach().float(), fake_logits.detach().float()
    right = (real > 0).float().sum() + (fake < 0).float().sum()
    return {"rt": real.sign().mean(), "d_accuracy": right / (real.numel() + fake.numel())}


def add_weighted(acc: dict[str, torch.Tensor], logs: dict[str, torch.Tensor], w: float) -> None:
    """``acc[k] += w * logs[k]`` (detached): chunk means weighted into the batch mean."""
    for key, value in logs.items():
        value = value.detach() * w
        acc[key] = acc[key] + value if key in acc else value


def weighted(loss: torch.Tensor, w: float) -> torch.Tensor:
    """A chunk's mean loss weighted by its share of the batch (untouched for one chunk)."""
    return loss if w == 1.0 else loss * w


class TrainingStep:
    """G, D, G_ema, the two optimisers and EMA: everything one training step touches.

    Args:
        G: generator ``G(z, c) -> (B, C, H, W)`` in ~[-1, 1], with ``z_dim`` (and ``c_dim``).
        D: discriminator ``D(images, labels) -> (B, N)`` with ``trainable_parameters()``.
        loss: an :class:`~projected_gan.losses.AdversarialLoss`: separable (``d_loss_real``,
            ``d_loss_fake``) or ``paired`` (``d_loss(real, fake)``); ``g_loss(fake, real)``.
        penalty: optional gradient penalty (``GradientPenalty``): ``should_apply(step) ->
            (r1, r2)`` and ``lazy(images, logits, on)``.
        spec: learning rates, betas, precision, memory format, compile, EMA, seed, batch_gpu.
        device: where everything lives.
        dist: this process's place in a distributed run (gradients are all-reduced).
        label_pool: int labels ``(N,)`` of the real data, to draw fake labels from.
        global_batch: images per step over all processes (sets the default EMA half-life).
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        *,
        loss: Any,
        penalty: Any,
        spec: ExperimentSpec,
        device: torch.device,
        dist: distributed.DistInfo,
        label_pool: torch.Tensor | None,
        global_batch: int,
    ) -> None:
        t, o = spec.train, spec.optim
        self.device = device
        self.dist = dist
        # The resolved precision mode; D learns whether its features stay in fp32.
        self.precision = resolve_precision(t.precision, device, t.tf32)
        self.amp = self.precision.autocast
        self.precision.configure(D)
        self.memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
        self.G = G.to(device, memory_format=self.memory_format).train()
        self.D = D.to(device, memory_format=self.memory_format).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.loss = loss
        self.penalty = penalty
        self.paired = bool(getattr(loss, "paired", False))  # needs real and fake logits at once
        # SAN heads: D's own update sees split logits (features and direction apart).
        self.split = bool(getattr(D, "splits_logits", False))
        self.label_pool = None if label_pool is None else label_pool.to(device)
        self.ema_kimg = t.ema_kimg if t.ema_kimg is not None else global_batch * 10 / 32
        self.ema_rampup = t.ema_rampup
        self.d_params = list(D.trainable_parameters())
        self.g_params = [p for p in G.parameters() if p.requires_grad]
        self.g_opt = fused_adam(self.g_params, o.generator_lr, o.generator_betas, o.eps)
        self.d_opt = fused_adam(self.d_params, o.discriminator_lr, o.discriminator_betas, o.eps)
        self.batch_gpu = t.batch_gpu
        self.g_forward = torch.compile(self.G) if t.compile else self.G
        self.d_forward = torch.compile(self.D) if t.compile else self.D
        # Training latents and fake labels: one stream shared by all ranks (see z()).
        self.latents = torch.Generator(device=device)
        self.latents.manual_seed(t.seed + LATENT_SEED_OFFSET)
        # Device-side tick accumulators: read (one host sync) by the fit loop once per tick.
        self._found_inf = {"G": torch.zeros((), device=device), "D": torch.zeros((), device=device)}
        self.bad_run = torch.zeros((), device=device)  # consecutive bad steps (either network)
        self.bad_tick = torch.zeros((), device=device)
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    # ------------------------------------------------------------------------ inputs
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when the run's precision asks for it, else a no-op."""
        return self.precision.autocast_context(self.device.type)

    def fake_labels(self, n: int) -> torch.Tensor | None:
        """Labels ``(n,)`` drawn from the real label pool (None when unconditional)."""
        if self.label_pool is None or getattr(self.G, "c_dim", 0) == 0:
            return None
        w, r = self.dist.world_size, self.dist.rank
        idx = torch.randint(
            len(self.label_pool), (n * w,), device=self.device, generator=self.latents
        )
        return self.label_pool[idx[r::w]]

    def z(self, n: int) -> torch.Tensor:
        """Latents ``(n, z_dim)`` of this rank's share of the global batch."""
        # Every rank draws the latents of the whole global batch and keeps its share, as with
        # the real images: a step's fakes are the same whatever the number of processes.
        w, r = self.dist.world_size, self.dist.rank
        z = torch.randn(n * w, self.G.z_dim, device=self.device, generator=self.latents)
        return z[r::w].contiguous()

    # ------------------------------------------------------------------------ phases
    def _optimizer_step(
        self, name: str, opt: Any, params: list[nn.Parameter]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All-reduce, check and apply the gradients; (skipped flag, gradient norm) on device."""
        distributed.all_reduce_grads(params, self.dist.world_size)
        found_inf = self._found_inf[name]
        found_inf.zero_()
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.zeros((), device=self.device)
        if grads:
            # A health signal: the L2 norm of all gradients (one fused pass, no host sync).
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())
            torch._amp_foreach_non_finite_check_and_unscale_(
                grads, found_inf, torch.ones((), device=self.device)
            )
        opt.found_inf = found_inf
        opt.grad_scale = None
        opt.step()
        return found_inf, norm

    def chunks(self, n: int) -> list[slice]:
        """The micro-batches of a per-process batch of ``n``: slices of ``batch_gpu`` samples."""
        size = self.batch_gpu or n
        if n % size:
            raise ValueError(f"train.batch_gpu {size} does not divide the batch of {n}")
        return [slice(i, i + size) for i in range(0, n, size)]

    def _real_chunk(
        self, reals_u8: torch.Tensor, labels: torch.Tensor | None, part: slice
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A chunk of reals as float ``(b, C, H, W)`` in [-1, 1] in the run's memory format."""
        reals = to_float(reals_u8[part]).contiguous(memory_format=self.memory_format)
        return reals, None if labels is None else labels[part]

    def g_phase(
        self, reals_u8: torch.Tensor, real_labels: torch.Tensor | None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Update G on as many fakes as reals; returns (logs, 1.0 if the update was skipped).

        The reals are used by a paired loss only (D's logits on them, without autograd).
        """
        n = reals_u8.shape[0]
        # Gradients flow through the frozen projector into G; D's heads get none.
        for p in self.d_params:
            p.requires_grad_(False)
        self.g_opt.zero_grad(set_to_none=True)
        c = self.fake_labels(n)
        z = self.z(n)
        logs: dict[str, torch.Tensor] = {}
        for part in self.chunks(n):
            w = (part.stop - part.start) / n
            c_part = None if c is None else c[part]
            real_logits = None
            if self.paired:
                reals, labels = self._real_chunk(reals_u8, real_labels, part)
                with torch.no_grad(), self.autocast():
                    real_logits = self.d_forward(reals, labels)
            with self.autocast():
                fakes = self.g_forward(z[part], c_part)
                fakes = fakes.contiguous(memory_format=self.memory_format)
                fake_logits = self.d_forward(fakes, c_part)
                # A separable loss is called as before paired ones existed: g_loss(fake).
                args = (fake_logits, real_logits) if self.paired else (fake_logits,)
                loss_g, g_logs = self.loss.g_loss(*args)
            weighted(loss_g, w).backward()
            add_weighted(logs, {"loss_g": loss_g, **logit_stats(g_logs)}, w)
        bad, logs["grad_norm_g"] = self._optimizer_step("G", self.g_opt, self.g_params)
        return logs, bad

    def _d_logits(self, x: torch.Tensor, labels: torch.Tensor | None) -> Any:
        """D on ``x`` for D's own update: split logits when its heads split them (SAN)."""
        with self.autocast():
            if self.split:
                return self.d_forward(x, labels, split=True)
            return self.d_forward(x, labels)

    def d_phase(
        self, reals_u8: torch.Tensor, real_labels: torch.Tensor | None, step_index: int
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Update D on as many fakes as reals (uint8 ``(n, C, H, W)``); (logs, skipped flag).

        A separable loss backpropagates the fakes' pass before running the reals' (one graph
        alive at a time); a paired loss needs both passes, then one backward. R1 (reals) and
        R2 (fakes) are added on the steps where they are due, scaled for lazy regularisation.
        """
        n = reals_u8.shape[0]
        for p in self.d_params:
            p.requires_grad_(True)
        self.d_opt.zero_grad(set_to_none=True)
        c = self.fake_labels(n)
        z = self.z(n)
        use_r1, use_r2 = (
            (False, False) if self.penalty is None else self.penalty.should_apply(step_index)
        )
        paired = self.paired
        logs: dict[str, torch.Tensor] = {}
        for part in self.chunks(n):
            w = (part.stop - part.start) / n
            c_part = None if c is None else c[part]
            chunk_logs: dict[str, torch.Tensor] = {}
            # Fakes made without autograd, so the projector runs without it too (unless R2
            # needs the gradient with respect to them).
            with torch.no_grad(), self.autocast():
                fakes = self.g_forward(z[part], c_part)
            fakes = fakes.contiguous(memory_format=self.memory_format).requires_grad_(use_r2)
            fake_out = self._d_logits(fakes, c_part)
            fake_total: torch.Tensor | float = 0.0  # a Python zero: no device tensor per chunk
            if use_r2:
                chunk_logs["loss_r2"] = self.penalty.lazy(fakes, plain_logits(fake_out), "r2")
                fake_total = chunk_logs["loss_r2"]
            if not paired:
                loss_fake, fake_logs = self.loss.d_loss_fake(fake_out)
                chunk_logs["loss_d_fake"] = loss_fake
                weighted(loss_fake + fake_total, w).backward()
            reals, labels = self._real_chunk(reals_u8, real_labels, part)
            reals.requires_grad_(use_r1)
            real_out = self._d_logits(reals, labels)
            self._observe_reals(plain_logits(real_out))
            total: torch.Tensor | float = 0.0
            if use_r1:
                chunk_logs["loss_r1"] = self.penalty.lazy(reals, plain_logits(real_out), "r1")
                total = chunk_logs["loss_r1"]
            if paired:
                loss_d, d_logs = self.loss.d_loss(real_out, fake_out)
                chunk_logs["loss_d"] = loss_d
                total = total + loss_d + fake_total
            else:
                loss_real, real_logs = self.loss.d_loss_real(real_out)
                chunk_logs["loss_d_real"] = loss_real
                d_logs = {**fake_logs, **real_logs}
                total = total + loss_real
            weighted(total, w).backward()
            chunk_logs.update(logit_stats(d_logs))
            chunk_logs.update(sign_stats(plain_logits(real_out), plain_logits(fake_out)))
            add_weighted(logs, chunk_logs, w)
        bad, logs["grad_norm_d"] = self._optimizer_step("D", self.d_opt, self.d_params)
        if not paired:
            logs["loss_d"] = logs["loss_d_fake"] + logs["loss_d_real"]
        return logs, bad

    @torch.no_grad()
    def update_ema(self, global_batch: int, nimg: int) -> None:
        """Move G_ema towards G for one step of ``global_batch`` images, ``nimg`` seen so far."""
        beta = ema_beta(global_batch, nimg, self.ema_kimg, self.ema_rampup)
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - beta)
        ema_b, src_b = list(self.G_ema.buffers()), list(self.G.buffers())
        if ema_b:
            torch._foreach_copy_(ema_b, src_b)

    def __call__(
        self,
        reals_u8: torch.Tensor,
        real_labels: torch.Tensor | None,
        *,
        step_index: int,
        nimg: int,
    ) -> dict[str, torch.Tensor]:
        """One G phase, one D phase, then EMA on one batch; returns device scalars (no sync)."""
        n = reals_u8.shape[0]
        g_logs, bad_g = self.g_phase(reals_u8, real_labels)
        d_logs, bad_d = self.d_phase(reals_u8, real_labels, step_index)
        d_logs.update(self._adapt_augment(step_index, n))
        # After both phases, as the official loop does (G_ema tracks G after D's step too).
        self.update_ema(n * self.dist.world_size, nimg)
        logs = {**g_logs, **d_logs}
        bad = torch.maximum(bad_g, bad_d)
        self.bad_run.mul_(bad).add_(bad)  # reset on a good step, +1 on a bad one
        self.bad_tick.add_(bad)
        self._accumulate(logs)
        return logs

    # ------------------------------------------------------------------------ adaptive augment
    def _adaptive_augment(self) -> Any:
        """D's augmentation if it adapts while training (``accumulate``, ``adjust``, ``interval``
        and ``p``, as ``AdaptiveAugment`` has), else None."""
        augment = getattr(self.D, "augment", None)
        adapts = all(hasattr(augment, a) for a in ("accumulate", "adjust", "interval", "p"))
        return augment if adapts else None

    def _observe_reals(self, real_logits: torch.Tensor) -> None:
        """Give an adaptive augmentation the D logits of a chunk of reals (on the device)."""
        augment = self._adaptive_augment()
        if augment is not None:
            augment.accumulate(real_logits)

    def _adapt_augment(self, step_index: int, n: int) -> dict[str, torch.Tensor]:
        """Every ``interval`` steps, move an adaptive augmentation's p (on the device); returns
        ``{"augment_p": p}`` (a device scalar) for the step's logs, plus ``augment_T`` when it
        has a largest diffusion timestep ``T`` (Diffusion-GAN), or nothing without one."""
        augment = self._adaptive_augment()
        if augment is None:
            return {}
        if (step_index + 1) % augment.interval == 0:
            # Every rank adjusts from the same all-reduced statistics, so p stays equal on all.
            reduce = distributed.average_ if self.dist.enabled else None
            augment.adjust(n * self.dist.world_size * augment.interval, reduce=reduce)
        logs = {"augment_p": augment.p.detach().clone()}
        T = getattr(augment, "T", None)
        if isinstance(T, torch.Tensor):
            logs["augment_T"] = T.detach().float()
        return logs

    # ------------------------------------------------------------------------ ticks
    def _accumulate(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().float()
            if key in self.sums:
                self.sums[key] += value
            else:
                self.sums[key] = value.clone()
        self.count += 1

    def read_tick(self) -> tuple[dict[str, float], int, int]:
        """Means of the logs since the last call, bad steps this tick, bad steps in a row.

        The only host sync of a tick: every accumulated device scalar in one transfer.
        Distributed, the means are averaged over ranks (collective: every rank calls it).
        """
        keys = list(self.sums)
        values = torch.stack([self.sums[k] for k in keys] + [self.bad_tick, self.bad_run])
        # Losses averaged over ranks (the bad-step counts agree: gradients were all-reduced).
        if self.dist.enabled:
            distributed.average_(values)
        values = values.tolist()
        means = {k: v / max(self.count, 1) for k, v in zip(keys, values[: len(keys)])}
        self.sums.clear()
        self.count = 0
        self.bad_tick.zero_()
        return means, int(values[-2]), int(values[-1])
