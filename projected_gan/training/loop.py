"""The training loop: one G step then one D step per iteration, EMA, ticks, snapshots, metrics.

Hot-loop rules: everything the step produces stays on the device (losses are summed into device
accumulators and read once per tick), non-finite steps are skipped on the device by the fused
Adam kernel (``found_inf``), and nothing waits for the GPU between ticks.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from projected_gan import distributed
from projected_gan._version import __version__
from projected_gan.checkpoint import (
    Checkpoint,
    CheckpointError,
    find_checkpoints,
    latest_valid_checkpoint,
    load_module_state,
    save_checkpoint,
    snapshot_path,
)
from projected_gan.images import save_image_grid
from projected_gan.training.run_log import RunLogger
from projected_gan.training.spec import ExperimentSpec

__all__ = ["Trainer", "TrainingStopped", "ema_beta", "new_run_dir"]

# Model-defining spec fields: a checkpoint made with other values cannot be loaded.
ARCHITECTURE_FIELDS = ("data.resolution", "data.conditional", "generator", "discriminator")
# The latents' generator is seeded apart from the global RNG, so their streams never coincide.
LATENT_SEED_OFFSET = 1_000_003


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (too many bad steps, checkpoint not writable, ...)."""


def ema_beta(batch: int, nimg: int, ema_kimg: float, rampup: float | None) -> float:
    """Per-step EMA decay for a half-life of ``ema_kimg`` thousand images (with ramp-up)."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None and rampup > 0:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


def new_run_dir(root: str | Path, name: str) -> Path:
    """``<root>/<NNNNN>-<name>``, numbered one past the highest existing run."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    run = root / f"{max(numbers, default=-1) + 1:05d}-{name}"
    run.mkdir()
    return run


def _get(spec_dict: dict, dotted: str) -> Any:
    node: Any = spec_dict
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _fused_adam(params: list[nn.Parameter], lr: float, betas: tuple, eps: float) -> Any:
    # Fused Adam skips a step on the device when found_inf is set: no host sync needed.
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True)


class Trainer:
    """Trains a generator against a :class:`ProjectedDiscriminator`.

    Build one with :func:`projected_gan.build_from_spec`, or by hand from your own modules::

        trainer = Trainer(G, D, loss=create("losses", "hinge"), batches=InfiniteBatches(ds, 16))
        trainer.fit(kimg=10)

    Args:
        G: generator ``G(z, c) -> (B, C, R, R)`` with ``z_dim``/``c_dim``/``img_resolution``.
        D: discriminator with ``forward(images, labels) -> (B, N)`` and ``trainable_parameters()``.
        loss: object with ``g_loss(fake)`` and ``d_loss_real(real)`` / ``d_loss_fake(fake)``.
        batches: iterator of ``(uint8 images (B, C, R, R) on device, labels or None)``.
        spec: the experiment spec (defaults for everything not passed; saved with checkpoints).
        run_dir: output folder; created under ``spec.output.dir`` on the first write if None.
        label_pool: int labels of the real data, to draw fake labels from (conditional only).
        r1: optional R1 regulariser with ``should_apply(step)`` and ``penalty(x, logits)``.
        evaluate: optional ``fn(G_ema) -> dict[str, float]`` run on the metric cadence.
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        *,
        loss: Any,
        batches: Iterator,
        spec: ExperimentSpec | None = None,
        run_dir: str | Path | None = None,
        device: torch.device | str | None = None,
        label_pool: torch.Tensor | None = None,
        r1: Any = None,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        dist_info: distributed.DistInfo | None = None,
    ) -> None:
        self.spec = spec or ExperimentSpec()
        t = self.spec.train
        self.dist = dist_info or distributed.DistInfo()
        self.device = torch.device(device) if device is not None else _param_device(G)
        self.amp = t.precision == "bf16" or (t.precision == "auto" and self.device.type == "cuda")
        memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
        self.memory_format = memory_format
        self.G = G.to(self.device, memory_format=memory_format).train()
        self.D = D.to(self.device, memory_format=memory_format).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.loss = loss
        self.r1 = r1
        self.batches = batches
        self.label_pool = None if label_pool is None else label_pool.to(self.device)
        self.evaluate = evaluate
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.batch = t.batch // self.dist.world_size
        if self.batch * self.dist.world_size != t.batch:
            raise ValueError(
                f"train.batch={t.batch} must be divisible by the {self.dist.world_size} processes"
            )
        self.ema_kimg = t.ema_kimg if t.ema_kimg is not None else t.batch * 10 / 32
        o = self.spec.optim
        self.d_params = list(D.trainable_parameters())
        self.g_params = [p for p in G.parameters() if p.requires_grad]
        self.g_opt = _fused_adam(self.g_params, o.generator_lr, o.betas, o.eps)
        self.d_opt = _fused_adam(self.d_params, o.discriminator_lr, o.betas, o.eps)
        self.g_forward = torch.compile(self.G) if t.compile else self.G
        self.d_forward = torch.compile(self.D) if t.compile else self.D

        # Counters (host ints: they never need the GPU) and device-side accumulators.
        self.nimg = 0
        self.step_index = 0
        self.tick_index = 0
        self.best_metric: float | None = None
        self.best_nimg: int | None = None
        self.bad_steps_total = 0
        self.elapsed = 0.0  # training seconds before this process (resume)
        dev = self.device
        self._found_inf = {"G": torch.zeros((), device=dev), "D": torch.zeros((), device=dev)}
        self._bad_run = torch.zeros((), device=dev)  # consecutive bad steps (either network)
        self._bad_tick = torch.zeros((), device=dev)
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self._grid_z, self._grid_c = self._grid_latents()
        self._logger: RunLogger | None = None
        # Training latents and fake labels: one stream shared by all ranks (see _z).
        self._latents = torch.Generator(device=self.device)
        self._latents.manual_seed(t.seed + LATENT_SEED_OFFSET)

    # ------------------------------------------------------------------------ one step
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _fake_labels(self, n: int) -> torch.Tensor | None:
        if self.label_pool is None or getattr(self.G, "c_dim", 0) == 0:
            return None
        w, r = self.dist.world_size, self.dist.rank
        idx = torch.randint(
            len(self.label_pool), (n * w,), device=self.device, generator=self._latents
        )
        return self.label_pool[idx[r::w]]

    def _z(self, n: int) -> torch.Tensor:
        # Every rank draws the latents of the whole global batch and keeps its share, as with
        # the real images: a step's fakes are the same whatever the number of processes.
        w, r = self.dist.world_size, self.dist.rank
        z = torch.randn(n * w, self.G.z_dim, device=self.device, generator=self._latents)
        return z[r::w].contiguous()

    def _optimizer_step(self, name: str, opt: Any, params: list[nn.Parameter]) -> torch.Tensor:
        distributed.all_reduce_grads(params, self.dist.world_size)
        found_inf = self._found_inf[name]
        found_inf.zero_()
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            torch._amp_foreach_non_finite_check_and_unscale_(
                grads, found_inf, torch.ones((), device=self.device)
            )
        opt.found_inf = found_inf
        opt.grad_scale = None
        opt.step()
        return found_inf

    def _accumulate(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().float()
            if key in self._sums:
                self._sums[key] += value
            else:
                self._sums[key] = value.clone()

    def step(self) -> dict[str, torch.Tensor]:
        """One G step then one D step on one batch; returns device scalars (no host sync)."""
        reals_u8, real_labels = next(self.batches)
        logs: dict[str, torch.Tensor] = {}

        # G step: gradients flow through the frozen projector into G; D's heads get none.
        for p in self.d_params:
            p.requires_grad_(False)
        self.g_opt.zero_grad(set_to_none=True)
        c = self._fake_labels(self.batch)
        with self._autocast():
            fakes = self.g_forward(self._z(self.batch), c)
            fakes = fakes.contiguous(memory_format=self.memory_format)
            loss_g, g_logs = self.loss.g_loss(self.d_forward(fakes, c))
        loss_g.backward()
        bad_g = self._optimizer_step("G", self.g_opt, self.g_params)
        self._update_ema()
        logs["loss_g"] = loss_g.detach()
        logs.update(_logit_stats(g_logs))

        # D step: fakes made without autograd, so the projector runs without it too.
        for p in self.d_params:
            p.requires_grad_(True)
        self.d_opt.zero_grad(set_to_none=True)
        c = self._fake_labels(self.batch)
        with torch.no_grad(), self._autocast():
            fakes = self.g_forward(self._z(self.batch), c)
        fakes = fakes.contiguous(memory_format=self.memory_format)
        with self._autocast():
            loss_fake, fake_logs = self.loss.d_loss_fake(self.d_forward(fakes, c))
        loss_fake.backward()
        reals = (reals_u8.float() / 127.5 - 1).contiguous(memory_format=self.memory_format)
        use_r1 = self.r1 is not None and self.r1.should_apply(self.step_index)
        if use_r1:
            reals.requires_grad_(True)
        with self._autocast():
            real_logits = self.d_forward(reals, real_labels)
            loss_real, real_logs = self.loss.d_loss_real(real_logits)
        total_real = loss_real
        if use_r1:
            loss_r1 = self.r1.lazy_penalty(reals, real_logits)  # x interval: lazy regularisation
            total_real = loss_real + loss_r1
            logs["loss_r1"] = loss_r1.detach()
        total_real.backward()
        bad_d = self._optimizer_step("D", self.d_opt, self.d_params)
        logs["loss_d"] = loss_fake.detach() + loss_real.detach()
        logs["loss_d_real"] = loss_real.detach()
        logs["loss_d_fake"] = loss_fake.detach()
        logs.update(_logit_stats({**fake_logs, **real_logs}))

        bad = torch.maximum(bad_g, bad_d)
        self._bad_run.mul_(bad).add_(bad)  # reset on a good step, +1 on a bad one
        self._bad_tick.add_(bad)
        self._accumulate(logs)
        self._count += 1
        self.step_index += 1
        self.nimg += self.batch * self.dist.world_size
        return logs

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = ema_beta(self.spec.train.batch, self.nimg, self.ema_kimg, self.spec.train.ema_rampup)
        ema_p = list(self.G_ema.parameters())
        src_p = list(self.G.parameters())
        torch._foreach_lerp_(ema_p, src_p, 1.0 - beta)
        ema_b, src_b = list(self.G_ema.buffers()), list(self.G.buffers())
        if ema_b:
            torch._foreach_copy_(ema_b, src_b)

    # ---------------------------------------------------------------------- sampling
    def _grid_latents(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        res = getattr(self.G, "img_resolution", 64)
        n = 64 if res <= 64 else 32 if res <= 256 else 16
        gen = torch.Generator().manual_seed(self.spec.train.seed + 12345)
        z = torch.randn(n, self.G.z_dim, generator=gen).to(self.device)
        c_dim = getattr(self.G, "c_dim", 0)
        c = (torch.arange(n) % c_dim).to(self.device) if c_dim else None
        return z, c

    @torch.no_grad()
    def sample(
        self, z: torch.Tensor | None = None, c: torch.Tensor | None = None, ema: bool = True
    ) -> torch.Tensor:
        """Images ``(B, C, R, R)`` in ~[-1, 1] from G_ema (or G) for ``z`` (default: the grid)."""
        if z is None:
            z, c = self._grid_z, self._grid_c
        G = self.G_ema if ema else self.G
        out = []
        with self._own_rng():
            for i in range(0, len(z), max(self.batch, 1)):
                c_i = None if c is None else c[i : i + self.batch]
                with self._autocast():
                    out.append(G(z[i : i + self.batch], c_i))
        return torch.cat(out).float()

    def _own_rng(self):
        """Sampling and metrics must not shift the training random stream (exact resume)."""
        devices = [self.device] if self.device.type == "cuda" else []
        return torch.random.fork_rng(devices=devices, device_type=self.device.type)

    # ---------------------------------------------------------------------- run folder
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def _ensure_run_dir(self) -> Path:
        if not self.is_main:
            raise RuntimeError(f"rank {self.dist.rank} must not write files; rank 0 writes the run")
        if self.run_dir is None:
            name = self.spec.output.name or _default_run_name(self.spec)
            self.run_dir = new_run_dir(self.spec.output.dir, name)
        for sub in ("samples", "checkpoints", "plots"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        spec_file = self.run_dir / "spec.yaml"
        if not spec_file.exists():
            self.spec.save(spec_file)
        return self.run_dir

    @property
    def logger(self) -> RunLogger:
        if self._logger is None:
            self._logger = RunLogger(self._ensure_run_dir(), self.spec.output.tensorboard)
        return self._logger

    def save_samples(self, name: str | None = None) -> Path | None:
        """Write the fixed-latent grid of G_ema to ``samples/`` (rank 0); warns, never fails."""
        if not self.is_main:
            return None
        run = self._ensure_run_dir()
        path = run / "samples" / (name or f"fakes{self.nimg // 1000:06d}.png")
        try:
            save_image_grid(self.sample(), path)
        except OSError as exc:
            warnings.warn(
                f"could not write sample grid {path} ({exc}); training continues", stacklevel=2
            )
            return None
        return path

    def save_reals(self, images_u8: torch.Tensor) -> None:
        if not self.is_main:
            return
        path = self._ensure_run_dir() / "samples" / "reals.png"
        if not path.exists():
            try:
                save_image_grid(images_u8[: len(self._grid_z)].cpu(), path)
            except OSError as exc:
                warnings.warn(f"could not write {path} ({exc})", stacklevel=2)

    # -------------------------------------------------------------------- checkpoints
    def state_meta(self) -> dict[str, Any]:
        loader_state = self.batches.state_dict() if hasattr(self.batches, "state_dict") else {}
        return {
            "version": __version__,
            "nimg": self.nimg,
            "step": self.step_index,
            "tick": self.tick_index,
            "best_metric": self.best_metric,
            "best_nimg": self.best_nimg,
            "bad_steps_total": self.bad_steps_total,
            "elapsed": self.elapsed + self._session_seconds(),
            "loader": loader_state,
            "spec": self.spec.to_dict(),
            "num_classes": int(getattr(self.G, "c_dim", 0)),
            "data_images": getattr(self.batches, "num_images", None),  # model cards (#21)
            "world_size": self.dist.world_size,
        }

    def _rng_tensors(self) -> dict[str, torch.Tensor]:
        """RNG states: the shared latents' and every rank's own (``rng.torch.<rank>``, 0: none).

        Collective when distributed: every rank sends its states to rank 0.
        """
        own = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            own["cuda"] = torch.cuda.get_rng_state(self.device)
        rng = {"rng.latents": self._latents.get_state()}
        gathered = distributed.all_gather_objects(own) if self.dist.enabled else [own]
        for rank, states in enumerate(gathered):
            for key, state in states.items():
                rng[f"rng.{key}" + (f".{rank}" if rank else "")] = state
        return rng

    def save(self, path: str | Path | None = None, before_replace=None) -> Path | None:
        """Write a checkpoint (rank 0 writes), keep the newest K plus the best; atomic.

        Distributed, every rank calls it at the same step (it gathers their RNG states).
        """
        rng = self._rng_tensors()
        if not self.is_main:
            return None
        folder = self._ensure_run_dir() / "checkpoints"
        path = Path(path) if path is not None else snapshot_path(folder, self.nimg)
        try:
            save_checkpoint(
                path,
                models={"G": self.G, "G_ema": self.G_ema, "D": self.D},
                optimizers={"G": self.g_opt, "D": self.d_opt},
                extra=rng,
                meta=self.state_meta(),
                before_replace=before_replace,
            )
        except OSError as exc:
            raise TrainingStopped(
                f"could not write checkpoint {path} ({exc}); the previous checkpoints are kept. "
                "Free some space and resume with `projected-gan train --resume "
                f"{self.run_dir}`."
            ) from exc
        self._prune_checkpoints(folder)
        return path

    def _prune_checkpoints(self, folder: Path) -> None:
        keep = self.spec.train.keep_checkpoints
        best = None
        if self.best_nimg is not None:
            best = snapshot_path(folder, self.best_nimg).name
        for old in find_checkpoints(folder)[keep:]:
            if old.name != best:
                with contextlib.suppress(OSError):
                    old.unlink()

    def load_state(self, ckpt: Checkpoint, *, restore_rng: bool = True) -> None:
        """Restore weights, optimisers, counters, data position and RNG from ``ckpt``."""
        saved_spec = ckpt.meta.get("spec", {})
        mine = self.spec.to_dict()
        diffs = [
            f"{f}: checkpoint {json.dumps(_get(saved_spec, f))} vs now {json.dumps(_get(mine, f))}"
            for f in ARCHITECTURE_FIELDS
            if _get(saved_spec, f) != _get(mine, f)
        ]
        if diffs:
            raise CheckpointError(
                f"{ckpt.path} was made with a different spec: " + "; ".join(diffs)
            )
        for name, module in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
            if name not in ckpt.models:
                raise CheckpointError(f"{ckpt.path} has no weights for {name}")
            load_module_state(module, ckpt.models[name], f"{ckpt.path} [{name}]")
        for name, opt in (("G", self.g_opt), ("D", self.d_opt)):
            if name in ckpt.optimizers:
                opt.load_state_dict(ckpt.optimizers[name])
                _match_state_layout(opt)
        m = ckpt.meta
        self.nimg = int(m.get("nimg", 0))
        self.step_index = int(m.get("step", 0))
        self.tick_index = int(m.get("tick", 0))
        self.best_metric = m.get("best_metric")
        self.best_nimg = m.get("best_nimg")
        self.bad_steps_total = int(m.get("bad_steps_total", 0))
        self.elapsed = float(m.get("elapsed", 0.0))
        if hasattr(self.batches, "load_state_dict") and m.get("loader"):
            self.batches.load_state_dict(m["loader"])
        if restore_rng:
            self._restore_rng(ckpt, int(m.get("world_size", 1)))

    def _restore_rng(self, ckpt: Checkpoint, saved_world_size: int) -> None:
        extra, rank = ckpt.extra, self.dist.rank
        if "rng.latents" in extra:
            self._latents.set_state(extra["rng.latents"])
        suffix = f".{rank}" if rank else ""
        if saved_world_size == self.dist.world_size and f"rng.torch{suffix}" in extra:
            torch.set_rng_state(extra[f"rng.torch{suffix}"])
            if self.device.type == "cuda" and f"rng.cuda{suffix}" in extra:
                torch.cuda.set_rng_state(extra[f"rng.cuda{suffix}"], self.device)
        else:  # another number of processes: fresh, distinct streams per rank (augmentation)
            w = self.dist.world_size
            torch.manual_seed((self.spec.train.seed * w + rank) * 1_000_003 + self.step_index)

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        overrides: list[str] | tuple[str, ...] = (),
        device: str | torch.device | None = None,
    ) -> Trainer:
        """Rebuild a run from ``run_dir/spec.yaml`` (+ overrides) and load its newest checkpoint.

        Overrides may change the schedule (e.g. ``train.kimg=200``), never the architecture.
        """
        from projected_gan.training.build import build_from_spec

        run_dir = Path(run_dir)
        spec_file = run_dir / "spec.yaml"
        if not spec_file.is_file():
            raise CheckpointError(f"{run_dir} is not a run folder: it has no spec.yaml")
        spec = ExperimentSpec.load(spec_file, overrides=overrides)
        trainer = build_from_spec(spec, run_dir=run_dir, device=device)
        trainer.load_latest()
        if overrides and trainer.is_main:
            spec.save(spec_file)
        return trainer

    def load_latest(self) -> Checkpoint:
        """Load the newest usable checkpoint of ``run_dir`` (warning about broken newer ones)."""
        if self.run_dir is None:
            raise CheckpointError("this trainer has no run_dir to resume from")
        ckpt = latest_valid_checkpoint(self.run_dir)
        self.load_state(ckpt)
        return ckpt

    # ---------------------------------------------------------------------------- fit
    def _session_seconds(self) -> float:
        start = getattr(self, "_fit_start", None)
        return 0.0 if start is None else time.perf_counter() - start

    def _read_tick(self, tick_seconds: float, tick_images: int) -> dict[str, Any]:
        # The only host sync of a tick: all accumulated device scalars in one transfer.
        keys = list(self._sums)
        values = torch.stack([self._sums[k] for k in keys] + [self._bad_tick, self._bad_run])
        # Losses averaged over ranks (the bad-step counts agree: gradients were all-reduced).
        if self.dist.enabled:
            distributed.average_(values)
        values = values.tolist()
        bad_tick, bad_run = int(values[-2]), int(values[-1])
        record: dict[str, Any] = {
            "tick": self.tick_index,
            "kimg": round(self.nimg / 1000, 3),
            "seconds": round(self.elapsed + self._session_seconds(), 2),
            "img_per_s": round(tick_images / max(tick_seconds, 1e-9), 2),
            "sec_per_kimg": round(tick_seconds / max(tick_images / 1000, 1e-9), 3),
            "lr_g": self.g_opt.param_groups[0]["lr"],
            "lr_d": self.d_opt.param_groups[0]["lr"],
            "bad_steps": bad_tick,
        }
        for k, v in zip(keys, values[: len(keys)]):
            record[k.replace("/", "_")] = v / max(self._count, 1)
        if self.device.type == "cuda":
            record["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
        self._sums.clear()
        self._count = 0
        self._bad_tick.zero_()
        self.bad_steps_total += bad_tick
        if bad_tick:
            warnings.warn(
                f"{bad_tick} step(s) with a non-finite loss or gradient were skipped this tick "
                f"(kimg {record['kimg']}); {bad_run} in a row",
                stacklevel=2,
            )
        if bad_run >= self.spec.train.max_bad_steps:
            raise TrainingStopped(
                f"{bad_run} consecutive steps had non-finite losses or gradients "
                f"(train.max_bad_steps={self.spec.train.max_bad_steps}); stopping. The last good "
                "checkpoint is unchanged; lower the learning rate or use precision=fp32."
            )
        return record

    def run_metrics(self) -> dict[str, float] | None:
        """Evaluate G_ema (all ranks), log on rank 0, keep the best checkpoint's number."""
        if self.evaluate is None:
            return None
        t0 = time.perf_counter()
        with self._own_rng():
            results = self.evaluate(self.G_ema)
        if not self.is_main:
            return results
        record = {
            "kimg": round(self.nimg / 1000, 3),
            "seconds": round(self.elapsed + self._session_seconds(), 2),
            "eval_seconds": round(time.perf_counter() - t0, 2),
            **results,
        }
        self.logger.log_metrics(record)
        first = next(iter(results.values()), None)
        improved = first is not None and math.isfinite(first)
        if improved and (self.best_metric is None or first < self.best_metric):
            self.best_metric, self.best_nimg = first, self.nimg
        return results

    def fit(self, kimg: float | None = None, progress: bool = True) -> Path | None:
        """Train until ``kimg`` thousand images (default ``spec.train.kimg``); return the run dir.

        Ctrl-C (SIGINT) and SIGTERM finish the current step, save a checkpoint and return.
        Distributed, call it on every rank: rank 0 makes the run folder and tells the others,
        and a signal on any rank stops all of them after the same step (one step later).
        """
        t = self.spec.train
        total = int(round((kimg if kimg is not None else t.kimg) * 1000))
        if self.is_main:
            self._ensure_run_dir()
        if self.dist.enabled:
            self.run_dir = distributed.broadcast_object(self.run_dir)
        stop = {"signal": None}
        vote = distributed.StopVote(self.device, self.dist.world_size)

        def on_signal(signum, _frame):
            # A second Ctrl-C leaves at once; not under torchrun, which forwards the terminal's
            # Ctrl-C to ranks that already got it, and kills them itself if they linger.
            if stop["signal"] is not None and not self.dist.enabled:
                raise KeyboardInterrupt
            stop["signal"] = stop["signal"] or signum

        handlers = {}
        if _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, on_signal)
        bar = None
        if progress and self.is_main:
            from tqdm.auto import tqdm

            global_batch = self.batch * self.dist.world_size
            last = max(self.nimg, -(-total // global_batch) * global_batch)  # nimg at the end
            bar = tqdm(
                total=last / 1000,
                initial=self.nimg / 1000,
                unit="kimg",
                bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg "
                "[{elapsed}<{remaining}] {postfix}",
                dynamic_ncols=True,
            )
        self._fit_start = time.perf_counter()
        try:
            if self.is_main and self.nimg == 0:
                reals, _ = self._peek_reals()
                self.save_reals(reals)
                self.save_samples("fakes_init.png")
            if self.nimg == 0 and self.evaluate is not None and t.metrics_every > 0:
                self.run_metrics()
            tick_start, tick_nimg = time.perf_counter(), self.nimg
            stopping = not self.dist.enabled and stop["signal"] is not None
            while self.nimg < total and not stopping:
                prev = self.nimg
                self.step()
                stopping = vote(stop["signal"] is not None)  # the same answer on every rank
                now = self.nimg
                done = now >= total
                if _crossed(prev, now, t.tick) or done:
                    elapsed = time.perf_counter() - tick_start
                    record = self._read_tick(elapsed, now - tick_nimg)
                    self.tick_index += 1
                    if self.is_main:
                        self.logger.log_tick(record)
                        if bar is not None:
                            bar.update(now / 1000 - bar.n)
                            bar.set_postfix_str(
                                f"G {record.get('loss_g', float('nan')):.3f} "
                                f"D {record.get('loss_d', float('nan')):.3f} "
                                f"{record['img_per_s']:.0f} img/s"
                            )
                    tick_start, tick_nimg = time.perf_counter(), now
                if self.is_main and (_crossed(prev, now, t.sample_every) or done):
                    self.save_samples()
                if _crossed(prev, now, t.metrics_every) or done:
                    self.run_metrics()
                if _crossed(prev, now, t.snapshot_every) or done:
                    self.save()
            if stopping:
                self.save()
                if self.is_main:
                    why = f"signal {stop['signal']}" if stop["signal"] else "another rank's signal"
                    print(
                        f"\nstopped by {why} at kimg {self.nimg / 1000:.3f}; "
                        "checkpoint saved. Resume with: "
                        f"projected-gan train --resume {self.run_dir}"
                    )
        finally:
            for sig, old in handlers.items():
                signal.signal(sig, old)
            self.elapsed += self._session_seconds()
            self._fit_start = None
            if bar is not None:
                bar.close()
            if self._logger is not None:
                self._logger.close()
                self._logger = None
        return self.run_dir

    def _peek_reals(self) -> tuple[torch.Tensor, Any]:
        """A batch of reals for ``reals.png`` without moving the training data position."""
        state = self.batches.state_dict() if hasattr(self.batches, "state_dict") else None
        batch = next(self.batches)
        if state is not None:
            self.batches.load_state_dict(state)
        return batch


def _logit_stats(loss_logs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mean-logit entries of a loss's log dict (its loss values are logged already)."""
    return {k: v for k, v in loss_logs.items() if k.startswith("logits")}


def _match_state_layout(opt: torch.optim.Optimizer) -> None:
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


def _crossed(prev: int, now: int, every_kimg: float) -> bool:
    every = max(int(round(every_kimg * 1000)), 1)
    return now // every > prev // every


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _param_device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _default_run_name(spec: ExperimentSpec) -> str:
    data = Path(spec.data.path).stem if spec.data.path else "flowers64"
    name = f"{spec.generator.name}-{data}-{spec.data.resolution}-b{spec.train.batch}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
