"""``Trainer``: a training step, a run folder and resumable state, put together.

    trainer = Trainer(G, D, loss=create("losses", "hinge"), batches=InfiniteBatches(ds, 16))
    trainer.fit(kimg=10)

The step's maths lives in :mod:`~projected_gan.training.step`, the schedule in
:mod:`~projected_gan.training.fit`, snapshots in :mod:`~projected_gan.training.state` and the
folder layout in :mod:`~projected_gan.training.run_dir`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from projected_gan import distributed
from projected_gan._version import __version__
from projected_gan.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_described,
    generator_config,
    latest_valid_checkpoint,
    snapshot_path,
)
from projected_gan.fitting import check_fits
from projected_gan.generators.sampling import grid_latents
from projected_gan.images import grid_image
from projected_gan.loggers import LoggerGroup, RunInfo
from projected_gan.spec import ExperimentSpec
from projected_gan.training import fit as fit_loop
from projected_gan.training.assemble import Assembly, assemble, describe_run
from projected_gan.training.health import HealthMonitor
from projected_gan.training.health_signals import DiversityProbe
from projected_gan.training.init_weights import init_from, read_spec_source
from projected_gan.training.recovery import apply_recovery
from projected_gan.training.run_dir import default_run_name, prepare_run_dir, write_grid
from projected_gan.training.run_log import build_loggers
from projected_gan.training.state import (
    Counters,
    architecture_differences,
    load_weights,
    prune_checkpoints,
    write_checkpoint,
)
from projected_gan.training.step import TrainingStep

__all__ = ["Trainer", "build_from_spec"]


class Trainer:
    """Trains a generator against a :class:`ProjectedDiscriminator`.

    Build one with :func:`projected_gan.build_from_spec`, or by hand from your own modules::

        trainer = Trainer(G, D, loss=create("losses", "hinge"), batches=InfiniteBatches(ds, 16))
        trainer.fit(kimg=10)

    Args:
        G: generator ``G(z, c) -> (B, C, H, W)`` with ``z_dim``/``c_dim``/``img_resolution``.
        D: discriminator with ``forward(images, labels) -> (B, N)`` and ``trainable_parameters()``.
        loss: object with ``g_loss(fake)`` and ``d_loss_real(real)`` / ``d_loss_fake(fake)``.
        batches: iterator of ``(uint8 images (B, C, H, W) on device, labels or None)``; its
            ``batch_size`` (e.g. :class:`~projected_gan.data.InfiniteBatches`) is the
            per-process batch: G draws as many fakes per step, ``nimg`` counts them.
        spec: the experiment spec: defaults for everything the parts do not decide. The
            trainer's :attr:`spec` completes it from the parts' recorded configs (G, D, loss,
            the batches' dataset; see :func:`~projected_gan.training.assemble.describe_run`)
            and is what checkpoints record. Its ``train.batch`` must equal the batches' size
            times the processes.
        run_dir: output folder; created under ``spec.output.dir`` on the first write if None.
        device: where to train (default: where G's parameters are).
        label_pool: int labels of the real data, to draw fake labels from (conditional only).
        penalty: optional :class:`~projected_gan.losses.GradientPenalty` (R1 on reals, R2 on
            fakes): ``should_apply(step) -> (r1, r2)`` and ``lazy(images, logits, on)``.
        evaluate: optional ``fn(G_ema) -> dict[str, float]`` run on the metric cadence.
        dist_info: this process's rank and world size (default: a single process).
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
        penalty: Any = None,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        dist_info: distributed.DistInfo | None = None,
    ) -> None:
        self.dist = dist_info or distributed.DistInfo()
        # The one description of this run; sections its parts cannot describe, with why.
        self.spec, self.batch, self.undescribed = describe_run(
            spec, (G, D, loss, penalty), batches, self.dist.world_size, evaluate
        )
        self.device = torch.device(device) if device is not None else _param_device(G)
        self.core = TrainingStep(
            G,
            D,
            loss=loss,
            penalty=penalty,
            spec=self.spec,
            device=self.device,
            dist=self.dist,
            label_pool=label_pool,
            global_batch=self.global_batch,
        )
        self.batches = batches
        self.evaluate = evaluate
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.counters = Counters()
        self._grid_z, self._grid_c = grid_latents(G, self.spec.train.seed, self.device)
        # Only rank 0 logs; built here so a missing package fails before any training.
        self._loggers = build_loggers(self.spec) if self.is_main else []
        self._logger: LoggerGroup | None = None
        self._session_start: float | None = None
        # Where the starting weights came from (train.init / init_from); kept in checkpoints.
        self.init_record: dict[str, Any] | None = None
        # Health conditions watched at ticks and evaluations (training/recovery.py acts).
        self.health = HealthMonitor(self.spec.health)
        self.diversity_probe: DiversityProbe | None = None  # built at its first measurement

    # ------------------------------------------------------------------- the networks
    G = property(lambda self: self.core.G, doc="The generator being trained.")
    D = property(lambda self: self.core.D, doc="The discriminator (frozen projector + heads).")
    G_ema = property(lambda self: self.core.G_ema, doc="Moving average of G: what to sample.")
    g_opt = property(lambda self: self.core.g_opt)
    d_opt = property(lambda self: self.core.d_opt)

    loss = property(
        lambda self: self.core.loss,
        lambda self, value: setattr(self.core, "loss", value),
        doc="The adversarial loss (assignable).",
    )

    @property
    def global_batch(self) -> int:
        """Images per step over all processes."""
        return self.batch * self.dist.world_size

    @property
    def is_main(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.dist.is_main

    # ------------------------------------------------------------------- counters
    nimg = property(lambda self: self.counters.nimg, doc="Real images shown to D, all ranks.")
    step_index = property(lambda self: self.counters.step, doc="Training steps done.")
    tick_index = property(lambda self: self.counters.tick, doc="Log lines (ticks) written.")

    # ------------------------------------------------------------------- one step
    def step(self) -> dict[str, torch.Tensor]:
        """One G step then one D step on one batch; returns device scalars (no host sync)."""
        reals_u8, real_labels = next(self.batches)
        logs = self.core(reals_u8, real_labels, step_index=self.counters.step, nimg=self.nimg)
        self.counters.step += 1
        self.counters.nimg += reals_u8.shape[0] * self.dist.world_size
        return logs

    def fit(self, kimg: float | None = None, progress: bool = True) -> Path | None:
        """Train until ``kimg`` thousand images (default ``spec.train.kimg``); return the run dir.

        Ctrl-C (SIGINT) and SIGTERM finish the current step, save a checkpoint and return.
        Distributed, call it on every rank (see :func:`projected_gan.training.fit.fit`).
        """
        return fit_loop.fit(self, kimg=kimg, progress=progress)

    def start_session(self) -> None:
        """Start timing this process's share of the run (``fit`` calls it)."""
        self._session_start = time.perf_counter()

    def session_seconds(self) -> float:
        """Seconds since :meth:`start_session` (0 outside ``fit``)."""
        start = self._session_start
        return 0.0 if start is None else time.perf_counter() - start

    def end_session(self) -> None:
        """Add this session to the run's time and finish the loggers."""
        self.counters.elapsed += self.session_seconds()
        self._session_start = None
        if self._logger is not None:
            self._logger.finish()
            self._logger = None

    # ------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self, z: torch.Tensor | None = None, c: torch.Tensor | None = None, ema: bool = True
    ) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in ~[-1, 1] from G_ema (or G) for ``z`` (default: the grid)."""
        if z is None:
            z, c = self._grid_z, self._grid_c
        G = self.G_ema if ema else self.G
        out = []
        step = max(self.batch, 1)
        with self._own_rng():
            for i in range(0, len(z), step):
                c_i = None if c is None else c[i : i + step]
                with self.core.autocast():
                    out.append(G(z[i : i + step], c_i))
        return torch.cat(out).float()

    def _own_rng(self):
        """Sampling and metrics must not shift the training random stream (exact resume)."""
        devices = [self.device] if self.device.type == "cuda" else []
        return torch.random.fork_rng(devices=devices, device_type=self.device.type)

    # ------------------------------------------------------------------- run folder
    def ensure_run_dir(self) -> Path:
        """The run folder, made with its sub-folders and spec.yaml on first use (rank 0 only)."""
        if not self.is_main:
            raise RuntimeError(f"rank {self.dist.rank} must not write files; rank 0 writes the run")
        name = default_run_name(self.spec, self.undescribed)
        self.run_dir = prepare_run_dir(self.run_dir, self.spec, name, init=self.init_record)
        return self.run_dir

    @property
    def logger(self) -> LoggerGroup:
        """The run's loggers (``output.loggers``; rank 0), started on first use in a session."""
        if self._logger is None:
            run = RunInfo(self.ensure_run_dir(), self.spec.to_dict(), self.nimg)
            self._logger = LoggerGroup(self._loggers)
            self._logger.start(run)
        return self._logger

    def save_samples(self, name: str | None = None) -> Path | None:
        """Write the fixed-latent grid of G_ema to ``samples/`` (rank 0); warns, never fails."""
        if not self.is_main:
            return None
        path = self.ensure_run_dir() / "samples" / (name or f"fakes{self.nimg // 1000:06d}.png")
        images = self.sample()
        written = write_grid(images, path)
        self.logger.log_images({"fakes": grid_image(images)}, self.nimg)
        return written

    def save_reals(self) -> Path | None:
        """Write ``samples/reals.png`` once, without moving the training data position."""
        if not self.is_main:
            return None
        state = self.batches.state_dict() if hasattr(self.batches, "state_dict") else None
        reals, _ = next(self.batches)
        if state is not None:
            self.batches.load_state_dict(state)
        path = self.ensure_run_dir() / "samples" / "reals.png"
        if path.exists():
            return path
        reals = reals[: len(self._grid_z)].cpu()
        written = write_grid(reals, path)
        self.logger.log_images({"reals": grid_image(reals)}, self.nimg)
        return written

    def run_metrics(self) -> dict[str, float] | None:
        """Evaluate G_ema (all ranks), log on rank 0, keep the best checkpoint's number."""
        if self.evaluate is None:
            return None
        t0 = time.perf_counter()
        with self._own_rng():
            results = self.evaluate(self.G_ema)
        if not self.is_main:
            return results
        c = self.counters
        record = {
            "kimg": round(c.nimg / 1000, 3),
            "seconds": round(c.elapsed + self.session_seconds(), 2),
            "eval_seconds": round(time.perf_counter() - t0, 2),
            **results,
        }
        self.logger.log_metrics(record, c.nimg)
        c.note_metric(next(iter(results.values()), None))
        return results

    # ------------------------------------------------------------------- checkpoints
    def state_meta(self) -> dict[str, Any]:
        """The JSON metadata of a checkpoint: counters, data position, spec, version."""
        loader_state = self.batches.state_dict() if hasattr(self.batches, "state_dict") else {}
        return {
            "version": __version__,
            **self.counters.to_meta(),
            "elapsed": self.counters.elapsed + self.session_seconds(),
            "loader": loader_state,
            "spec": self.spec.to_dict(),
            "num_classes": int(getattr(self.G, "c_dim", 0)),
            "world_size": self.dist.world_size,
            "projection_seed": getattr(self.D, "projection_seed", None),
            # The spec sections it cannot describe (a hand-built run's custom parts or data).
            "undescribed": self.undescribed,
            "init": self.init_record,
            "health": self.health.state_dict(),
        }

    def save(self, path: str | Path | None = None, before_replace=None) -> Path | None:
        """Write a checkpoint (rank 0 writes), keep the newest K plus the best; atomic.

        Distributed, every rank calls it at the same step (it gathers their RNG states).
        """
        rng = distributed.gather_rng_states(self.core.latents, self.device, self.dist)
        if not self.is_main:
            return None
        folder = self.ensure_run_dir() / "checkpoints"
        path = Path(path) if path is not None else snapshot_path(folder, self.nimg)
        healthy = self.health.snapshot_taken(self.nimg)
        write_checkpoint(
            path,
            models={"G": self.G, "G_ema": self.G_ema, "D": self.D},
            optimizers={"G": self.g_opt, "D": self.d_opt},
            rng=rng,
            meta={**self.state_meta(), "healthy": healthy},
            run_dir=self.run_dir,
            before_replace=before_replace,
        )
        spare = (self.counters.best_nimg, self.health.last_healthy_nimg)
        prune_checkpoints(folder, self.spec.train.keep_checkpoints, spare)
        return path

    def load_state(
        self, ckpt: Checkpoint, *, restore_rng: bool = True, restore_health: bool = True
    ) -> None:
        """Restore weights, optimisers, counters, data position, RNG and health from ``ckpt``
        (``restore_health=False``: a rollback keeps the monitor it has)."""
        diffs = architecture_differences(ckpt.meta, self.spec.to_dict())
        if diffs:
            raise CheckpointError(
                f"{ckpt.path} was made with another architecture: " + "; ".join(diffs)
            )
        load_weights(
            ckpt,
            {"G": self.G, "G_ema": self.G_ema, "D": self.D},
            {"G": self.g_opt, "D": self.d_opt},
        )
        m = ckpt.meta
        self.counters = Counters.from_meta(m)
        self.init_record = m.get("init")
        if hasattr(self.batches, "load_state_dict") and m.get("loader"):
            self.batches.load_state_dict(m["loader"])
        if restore_rng:
            distributed.restore_rng_states(
                ckpt.extra,
                self.core.latents,
                self.device,
                self.dist,
                saved_world_size=int(m.get("world_size", 1)),
                seed=self.spec.train.seed,
                step=self.counters.step,
            )
        if restore_health:
            self.health.load_state_dict(m.get("health"))
            apply_recovery(self)  # a rollback's learning rates and data order

    def load_latest(self) -> Checkpoint:
        """Load the newest usable checkpoint of ``run_dir`` (warning about broken newer ones)."""
        if self.run_dir is None:
            raise CheckpointError("this trainer has no run_dir to resume from")
        ckpt = latest_valid_checkpoint(self.run_dir)
        self.load_state(ckpt)
        return ckpt

    # ------------------------------------------------------------------- construction
    @classmethod
    def from_spec(cls, spec: ExperimentSpec, *, run_dir: str | Path | None = None) -> Trainer:
        """Assemble data, G, D, loss, optimisers and EMA from ``spec`` (see ``build_from_spec``);
        with ``train.init``, start from those weights (SOURCE is read before anything is built)."""
        source = read_spec_source(spec)
        trainer = cls._assembled(assemble(spec), spec, run_dir)
        if source is not None:
            init_from(trainer, source, partial=spec.train.init.partial)
        return trainer

    @classmethod
    def _assembled(
        cls, a: Assembly, spec: ExperimentSpec, run_dir: str | Path | None = None
    ) -> Trainer:
        """A trainer of assembled parts, the same on every rank (weights broadcast)."""
        trainer = cls(
            a.G,
            a.D,
            loss=a.loss,
            batches=a.batches,
            spec=spec,
            run_dir=run_dir,
            device=a.device,
            label_pool=a.label_pool,
            penalty=a.penalty,
            evaluate=a.evaluate,
            dist_info=a.dist_info,
        )
        for module in (trainer.G, trainer.G_ema, trainer.D):
            distributed.broadcast_parameters(module)
        info = a.dist_info
        torch.manual_seed(spec.train.seed * info.world_size + info.rank)
        return trainer

    @classmethod
    def resume(
        cls, run_dir: str | Path, overrides: Sequence[str | tuple[str, Any]] = ()
    ) -> Trainer:
        """Rebuild the run in ``run_dir`` from its spec (+ overrides) and load its newest usable
        checkpoint; a hand-built run like a spec-built one, since its spec describes its parts.

        Overrides may change the schedule or the device (``train.kimg=200``,
        ``train.device=cpu``), never the architecture. A run whose spec cannot describe a part
        (a custom module, data made in memory) is refused with an
        :class:`~projected_gan.checkpoint.UndescribedRunError`.
        """
        run_dir = Path(run_dir)
        spec_file = run_dir / "spec.yaml"
        if not spec_file.is_file():
            raise CheckpointError(f"{run_dir} is not a run folder: it has no spec.yaml")
        ckpt = latest_valid_checkpoint(run_dir)
        check_described(
            ckpt,
            ("generator", "discriminator", "loss", "data"),
            "Build the same parts and data, pass them to Trainer(..., run_dir=RUN) and call "
            "trainer.load_latest().",
        )
        # A run folder from elsewhere cannot make this build a generator of any size: its
        # recorded config must hold the checkpoint's tensors (checked on the meta device).
        recorded = generator_config(ckpt)
        check_fits(recorded, ckpt.models.get("G", {}), f"{ckpt.path} [G]", error=CheckpointError)
        spec = ExperimentSpec.load(spec_file, overrides=overrides)
        trainer = cls._assembled(assemble(spec), spec, run_dir)
        trainer.load_state(ckpt)
        if overrides and trainer.is_main:
            trainer.spec.save(spec_file)
        return trainer


def build_from_spec(spec: ExperimentSpec, *, run_dir: str | Path | None = None) -> Trainer:
    """A ready :class:`Trainer` from an :class:`ExperimentSpec`: data, G, D (projector + heads +
    augmentation), loss, optimisers and EMA on ``spec.train.device``.

    Args:
        spec: a validated spec (``ExperimentSpec.load(...)``).
        run_dir: write into this folder; default: a new numbered folder in ``spec.output.dir``,
            made on the first write.
    """
    return Trainer.from_spec(spec, run_dir=run_dir)


def _param_device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
