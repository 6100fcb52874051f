"""What a run does about its health: measure at a tick, decide, then warn, stop or roll back.

The fit loop calls :func:`check_tick` on each tick record and :func:`check_metric` on each
evaluation, then :func:`respond`, which says whether the run was rolled back (the loop then
continues from the restored snapshot). Rank 0 decides (it holds the records) and every rank acts on
the same decision. Each firing is written to ``log.jsonl`` and the loggers as an event, kept in the
checkpoint metadata (:class:`~projected_gan.training.health.HealthMonitor`), and survives
``--resume``, as do a rollback's lower learning rate and new data order (:func:`apply_recovery`).

Responses (``health.<condition>.action``):

- ``warn``: a warning and the event record; training goes on.
- ``stop``: a snapshot, then :class:`HealthStopped` (the command line prints its one-line reason
  and exits with code 3).
- ``rollback``: load the best snapshot (``health.rollback.to: best``, when the run has metrics)
  or the newest healthy one, multiply both learning rates by ``health.rollback.lr_factor``, draw
  the data order from a new seed, and continue; after ``health.rollback.max`` rollbacks a firing
  stops the run instead.
"""

from __future__ import annotations

import warnings
from typing import Any

from projected_gan import distributed
from projected_gan.checkpoint import CheckpointError, load_checkpoint, snapshot_path
from projected_gan.loggers.plots import ROLLBACK_EVENT
from projected_gan.training.health import Firing
from projected_gan.training.health_signals import DiversityProbe, ema_distance
from projected_gan.training.state import TrainingStopped

__all__ = [
    "DATA_ORDER_STRIDE",
    "HEALTH_EXIT_CODE",
    "HealthStopped",
    "HealthWarning",
    "apply_recovery",
    "check_metric",
    "check_tick",
    "health_signals",
    "respond",
]

HEALTH_EXIT_CODE = 3
DATA_ORDER_STRIDE = 100_003  # data-order seed = train.seed + stride * rollbacks that reseeded


class HealthWarning(UserWarning):
    """A health condition fired with ``action: warn``."""


class HealthStopped(TrainingStopped):
    """A health condition stopped the run (``action: stop``, or no rollback left)."""

    exit_code = HEALTH_EXIT_CODE


def health_signals(trainer: Any, nimg: int) -> dict[str, float]:
    """The tick's signals measured outside the step (rank 0): ``g_ema_distance`` always,
    ``diversity`` when ``health.diversity_every`` (default: ``train.sample_every``) kimg have
    passed since the last measurement."""
    out = {"g_ema_distance": ema_distance(trainer.G, trainer.G_ema)}
    h = trainer.spec.health
    monitor = trainer.health
    every = h.diversity_every or trainer.spec.train.sample_every
    step = max(int(round(every * 1000)), 1)
    if h.diversity_samples >= 2 and nimg // step > monitor.diversity_nimg // step:
        monitor.diversity_nimg = nimg
        if trainer.diversity_probe is None:
            dataset = getattr(trainer.batches, "dataset", None)
            trainer.diversity_probe = DiversityProbe.for_run(
                trainer.spec, dataset, trainer.G_ema, trainer.device
            )
        if trainer.diversity_probe is not None:
            # trainer.sample forks the random state: the training stream stays as it was
            out["diversity"] = trainer.diversity_probe.measure(trainer.sample)
    return out


def check_tick(trainer: Any, record: dict[str, Any]) -> list[Firing]:
    """The conditions one tick record sets off (rank 0 adds the tick's health signals to the
    record first; other ranks return nothing: :func:`respond` shares rank 0's decision)."""
    if not trainer.is_main:
        return []
    record.update(health_signals(trainer, trainer.nimg))
    return trainer.health.check_tick(record)


def check_metric(trainer: Any, results: dict[str, float] | None) -> list[Firing]:
    """``metric_worse`` for one evaluation's first metric (rank 0)."""
    if not (trainer.is_main and results):
        return []
    value = next(iter(results.values()))
    return trainer.health.check_metric(value, round(trainer.nimg / 1000, 3))


def respond(trainer: Any, firings: list[Firing]) -> bool:
    """Log, warn, stop or roll back for rank 0's ``firings`` (collective: every rank calls it);
    returns True when the run was rolled back, False when it goes on as it was."""
    if trainer.dist.enabled:
        firings = distributed.broadcast_object(firings)
    if not firings:
        return False
    if trainer.is_main:
        for firing in firings:
            trainer.logger.log_event(firing.to_record(), trainer.nimg)
            if firing.action == "warn":
                warnings.warn(f"health: {_line(firing)}", HealthWarning, stacklevel=3)
    worst = max(firings, key=lambda f: _SEVERITY.index(f.action))
    if worst.action == "stop":
        _stop(trainer, worst, "")
    if worst.action == "rollback":
        rb = trainer.spec.health.rollback
        if trainer.health.rollbacks >= rb.max:
            _stop(trainer, worst, f" (after {trainer.health.rollbacks} rollback(s) of {rb.max})")
        _roll_back(trainer, worst)
        return True
    return False


_SEVERITY = ("warn", "rollback", "stop")


def _line(firing: Firing) -> str:
    return f"{firing.condition} at kimg {firing.kimg:g}: {firing.message}"


def _stop(trainer: Any, firing: Firing, why: str) -> None:
    trainer.save()  # what the run looked like when it stopped, for a look or a resume
    raise HealthStopped(f"stopped by health check {_line(firing)}{why}")


def _target(trainer: Any) -> Any:
    """The snapshot to roll back to, loaded (every rank reads the one rank 0 picked), or None."""
    path = None
    if trainer.is_main:
        folder = trainer.ensure_run_dir() / "checkpoints"
        candidates = []
        if trainer.spec.health.rollback.to == "best":
            candidates.append(trainer.counters.best_nimg)
        candidates.append(trainer.health.last_healthy_nimg)
        paths = [snapshot_path(folder, n) for n in candidates if n is not None]
        path = next((p for p in paths if p.is_file()), None)
    if trainer.dist.enabled:
        path = distributed.broadcast_object(path)
    if path is None:
        return None
    try:
        return load_checkpoint(path)
    except CheckpointError:
        return None


def _roll_back(trainer: Any, firing: Firing) -> None:
    ckpt = _target(trainer)
    if ckpt is None:
        _stop(trainer, firing, " (no healthy snapshot to roll back to)")
    keep = trainer.counters
    rb = trainer.spec.health.rollback
    trainer.load_state(ckpt, restore_health=False)
    # The run's clock and tick count go on; its position (images, steps) is the snapshot's.
    trainer.counters.tick, trainer.counters.elapsed = keep.tick, keep.elapsed
    trainer.counters.bad_steps_total = keep.bad_steps_total
    trainer.health.after_rollback(rb.lr_factor, rb.new_data_order)
    apply_recovery(trainer)
    trainer.core.read_tick()  # drop the abandoned stretch's partial tick sums
    record = {
        "event": ROLLBACK_EVENT,
        "kimg": round(trainer.nimg / 1000, 3),
        "from_kimg": firing.kimg,
        "condition": firing.condition,
        "rollbacks": trainer.health.rollbacks,
        "lr_scale": trainer.health.lr_scale,
        "data_order": trainer.health.data_order,
    }
    trainer.health.events.append(record)
    if trainer.is_main:
        trainer.logger.log_event(record, trainer.nimg)
        warnings.warn(
            f"health: {_line(firing)}; rolled back to kimg {record['kimg']:g} with learning "
            f"rates x{trainer.health.lr_scale:g} (rollback {trainer.health.rollbacks} of "
            f"{rb.max})",
            HealthWarning,
            stacklevel=3,
        )


def apply_recovery(trainer: Any) -> None:
    """Put the rollbacks' changes on a trainer whose state was just loaded (rollback, resume):
    learning rates = the spec's x ``lr_scale``, the data order's seed moved on per reseed."""
    h = trainer.health
    o = trainer.spec.optim
    for opt, lr in ((trainer.g_opt, o.generator_lr), (trainer.d_opt, o.discriminator_lr)):
        for group in opt.param_groups:
            group["lr"] = lr * h.lr_scale
    batches = trainer.batches
    if h.data_order and hasattr(batches, "seed") and hasattr(batches, "load_state_dict"):
        batches.seed = trainer.spec.train.seed + DATA_ORDER_STRIDE * h.data_order
        batches.load_state_dict(batches.state_dict())  # rebuild the order from the new seed
