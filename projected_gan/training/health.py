"""A run's health: named conditions read from the tick records and the metrics, and their record.

:class:`HealthMonitor` is pure bookkeeping on plain numbers (the tick record of
:func:`~projected_gan.training.fit.tick_record` and each evaluation's first metric): it decides
which condition fires, keeps the windows it needs and the events it raised, and round-trips
through a checkpoint's metadata, so a resumed run watches exactly as it would have. What the run
does about a firing (warn, stop, roll back) is :mod:`~projected_gan.training.recovery`'s job;
the thresholds and actions are the spec's ``health`` section
(:class:`~projected_gan.spec.health.HealthSpec`).

Signals in a tick record (all plain floats, from the step's device accumulators and
:mod:`~projected_gan.training.health_signals`):

- ``logits_real`` / ``logits_fake``: D's mean logits; ``rt`` = E[sign(D(real))] in [-1, 1]
  (StyleGAN2-ADA's overfitting measure) and ``d_accuracy`` (reals > 0 and fakes < 0);
- ``grad_norm_g`` / ``grad_norm_d``: the L2 norm of all of G's / D's gradients, tick mean;
- ``bad_steps``: steps whose loss or gradient was not finite;
- ``g_ema_distance``: ||G - G_ema|| / ||G_ema|| over all parameters;
- ``diversity``: mean pairwise feature distance of a fixed batch of G_ema samples divided by
  the same for a fixed batch of reals (1 = as varied as the data; measured every
  ``health.diversity_every`` kimg, so absent from some records).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from projected_gan.loggers.plots import HEALTH_EVENT, LOSS_KEYS
from projected_gan.spec.health import HealthSpec

__all__ = ["CONDITIONS", "Firing", "HealthMonitor"]

CONDITIONS = ("divergence", "collapse", "overfitting", "metric_worse")
GRAD_KEYS = ("grad_norm_g", "grad_norm_d")
HISTORY = 200  # gradient-norm ticks kept for the median (a checkpoint stays small)
EVENTS_KEPT = 200  # newest events kept in a checkpoint's metadata


@dataclass(frozen=True)
class Firing:
    """One condition firing: what, when, the number that crossed its threshold, the action."""

    condition: str
    kimg: float
    value: float | None  # None: the value was not finite (JSON has no NaN)
    threshold: float
    action: str
    message: str

    def to_record(self) -> dict[str, Any]:
        """The JSON record written to ``log.jsonl``, the loggers and the checkpoint."""
        return {"event": HEALTH_EVENT, **asdict(self)}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class HealthMonitor:
    """Decides which conditions fire, from tick records and metric values (rank 0).

    Args:
        spec: the thresholds and actions (the spec's ``health`` section).
    """

    def __init__(self, spec: HealthSpec) -> None:
        self.spec = spec
        self.grad_history: dict[str, list[float]] = {k: [] for k in GRAD_KEYS}
        self.diversity_peak: float | None = None  # the highest diversity measured
        self.collapse_run = 0  # measurements in a row below it
        self.saturated_since: float | None = None  # kimg where r_t became saturated
        self.metric_last: float | None = None
        self.metric_run = 0  # evaluations in a row, each worse than the one before
        self.events: list[dict[str, Any]] = []
        self.rollbacks = 0
        self.lr_scale = 1.0
        self.data_order = 0  # how many times the data order was re-seeded
        self.fired_since_snapshot = False
        self.last_healthy_nimg: int | None = None
        self.diversity_nimg = 0  # images seen at the last diversity measurement

    # ------------------------------------------------------------------ conditions
    def check_tick(self, record: Mapping[str, Any]) -> list[Firing]:
        """The conditions that fire on one tick record (``kimg`` and the signals)."""
        kimg = float(record["kimg"])
        found = [self._divergence(record, kimg), self._collapse(record, kimg)]
        found.append(self._overfitting(record, kimg))
        return self._fired([f for f in found if f is not None])

    def check_metric(self, value: float | None, kimg: float) -> list[Firing]:
        """``metric_worse`` for one evaluation's first metric (lower is better)."""
        if not _finite(value):
            return []
        worse = self.metric_last is not None and value > self.metric_last
        self.metric_run = self.metric_run + 1 if worse else 0
        self.metric_last = value
        spec = self.spec.metric_worse
        if self.metric_run < spec.evaluations:
            return []
        self.metric_run = 0  # fire once per run of worse evaluations
        firing = Firing(
            "metric_worse",
            kimg,
            value,
            float(spec.evaluations),
            spec.action,
            f"the metric got worse at {spec.evaluations} evaluations in a row (now {value:.4g})",
        )
        return self._fired([firing])

    def _divergence(self, record: Mapping[str, Any], kimg: float) -> Firing | None:
        spec = self.spec.divergence
        action = spec.action
        bad = record.get("bad_steps", 0) or 0
        if bad:
            return Firing(
                "divergence",
                kimg,
                float(bad),
                0.0,
                action,
                f"{bad} step(s) with a non-finite loss or gradient",
            )
        for key in LOSS_KEYS:
            v = record.get(key)
            if v is not None and not _finite(v):
                return Firing("divergence", kimg, None, 0.0, action, f"{key} is {v}")
            if _finite(v) and abs(v) > spec.loss_limit:
                return Firing(
                    "divergence",
                    kimg,
                    float(v),
                    spec.loss_limit,
                    action,
                    f"|{key}| = {abs(v):.4g} > {spec.loss_limit:g}",
                )
        for key in GRAD_KEYS:
            v = record.get(key)
            if v is None:
                continue
            past = self.grad_history[key]
            if not _finite(v):
                return Firing("divergence", kimg, None, 0.0, action, f"{key} is {v}")
            if len(past) >= spec.warmup_ticks:
                limit = spec.grad_factor * statistics.median(past)
                if v > limit:
                    return Firing(
                        "divergence",
                        kimg,
                        float(v),
                        limit,
                        action,
                        f"{key} = {v:.4g} > {spec.grad_factor:g} x its median "
                        f"{limit / spec.grad_factor:.4g}",
                    )
            past.append(float(v))
            del past[:-HISTORY]
        return None

    def _collapse(self, record: Mapping[str, Any], kimg: float) -> Firing | None:
        spec = self.spec.collapse
        v = record.get("diversity")
        if not _finite(v):
            return None
        self.diversity_peak = max(v, self.diversity_peak or 0.0)
        if v >= spec.threshold:
            self.collapse_run = 0
            return None
        if self.diversity_peak < spec.threshold:  # an untrained G may start below: not a collapse
            return None
        self.collapse_run += 1
        if self.collapse_run < spec.patience:
            return None
        self.collapse_run = 0
        return Firing(
            "collapse",
            kimg,
            float(v),
            spec.threshold,
            spec.action,
            f"G_ema's samples are {v:.2f}x as varied as the reals (threshold {spec.threshold:g}) "
            f"for {spec.patience} measurements",
        )

    def _overfitting(self, record: Mapping[str, Any], kimg: float) -> Firing | None:
        spec = self.spec.overfitting
        v = record.get("rt")
        if not _finite(v):
            return None
        if v < spec.threshold:
            self.saturated_since = None
            return None
        if self.saturated_since is None:
            self.saturated_since = kimg
        if kimg - self.saturated_since < spec.patience_kimg - 1e-9:  # 0.6 - 0.2 < 0.4 in floats
            return None
        self.saturated_since = kimg  # fire again only after another patience_kimg
        return Firing(
            "overfitting",
            kimg,
            float(v),
            spec.threshold,
            spec.action,
            f"D's r_t = {v:.3f} >= {spec.threshold:g} for {spec.patience_kimg:g} kimg: "
            "D tells the training images apart (more data or augmentation helps)",
        )

    def _fired(self, firings: list[Firing]) -> list[Firing]:
        for f in firings:
            self.events.append(f.to_record())
            self.fired_since_snapshot = True
        del self.events[:-EVENTS_KEPT]
        return firings

    # ------------------------------------------------------------------ snapshots
    def snapshot_taken(self, nimg: int) -> bool:
        """Note a snapshot at ``nimg``; returns whether it is healthy (nothing fired since the
        previous one), which makes it the rollback target of ``rollback.to: healthy``."""
        healthy = not self.fired_since_snapshot
        if healthy:
            self.last_healthy_nimg = nimg
        self.fired_since_snapshot = False
        return healthy

    def after_rollback(self, lr_factor: float, reorder: bool) -> None:
        """Count a rollback; forget the windows of the abandoned stretch."""
        self.rollbacks += 1
        self.lr_scale *= lr_factor
        self.data_order += int(reorder)
        self.collapse_run = 0
        self.saturated_since = None
        self.metric_last, self.metric_run = None, 0
        self.fired_since_snapshot = False

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON for a checkpoint's metadata."""
        return {
            "grad_history": {k: list(v) for k, v in self.grad_history.items()},
            "diversity_peak": self.diversity_peak,
            "collapse_run": self.collapse_run,
            "saturated_since": self.saturated_since,
            "metric_last": self.metric_last,
            "metric_run": self.metric_run,
            "events": list(self.events),
            "rollbacks": self.rollbacks,
            "lr_scale": self.lr_scale,
            "data_order": self.data_order,
            "fired_since_snapshot": self.fired_since_snapshot,
            "last_healthy_nimg": self.last_healthy_nimg,
            "diversity_nimg": self.diversity_nimg,
        }

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Continue from :meth:`state_dict` (None or a malformed entry: start afresh)."""
        fresh = HealthMonitor(self.spec)
        if not isinstance(state, Mapping):
            self.__dict__.update(fresh.__dict__)
            return
        history = state.get("grad_history")
        for key in GRAD_KEYS:
            values = history.get(key) if isinstance(history, Mapping) else None
            ok = isinstance(values, list) and all(_finite(v) for v in values)
            fresh.grad_history[key] = [float(v) for v in values[-HISTORY:]] if ok else []
        typed = {
            "diversity_peak": float,
            "collapse_run": int,
            "saturated_since": float,
            "metric_last": float,
            "metric_run": int,
            "rollbacks": int,
            "lr_scale": float,
            "data_order": int,
            "fired_since_snapshot": bool,
            "last_healthy_nimg": int,
            "diversity_nimg": int,
        }
        for key, kind in typed.items():
            value = state.get(key)
            if isinstance(value, bool) and kind is not bool:
                continue
            if isinstance(value, (int, float, bool)) and (kind is not int or value == int(value)):
                setattr(fresh, key, kind(value))
        events = state.get("events")
        if isinstance(events, list):
            fresh.events = [e for e in events if isinstance(e, dict)][-EVENTS_KEPT:]
        self.__dict__.update(fresh.__dict__)
