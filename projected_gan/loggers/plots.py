"""The run's plots, drawn with matplotlib from the records of ``log.jsonl``/``metrics.jsonl``:
``losses.png``, ``health.png`` and the metric curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "HEALTH_EVENT",
    "HEALTH_EVENTS",
    "LOSS_KEYS",
    "ROLLBACK_EVENT",
    "health_figure",
    "loss_figure",
    "metric_figure",
]

LOSS_KEYS = ("loss_g", "loss_d", "loss_d_real", "loss_d_fake", "loss_r1", "loss_r2")
# Up to this many ticks each point gets a marker: a line through one point draws nothing.
MARKER_MAX_POINTS = 30
# Not metric values, though numbers, in a metrics record.
NOT_METRICS = frozenset({"kimg", "seconds", "eval_seconds", "tick"})


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def loss_figure(records: Sequence[dict[str, Any]]) -> Any:
    """A matplotlib figure of each loss in ``LOSS_KEYS`` against kimg, one point per tick record."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    kimg = [r["kimg"] for r in records]
    marker = "o" if len(records) <= MARKER_MAX_POINTS else None
    for key in LOSS_KEYS:
        values = [r.get(key) for r in records]
        if any(v is not None and math.isfinite(v) for v in values):
            y = [math.nan if v is None else v for v in values]
            ax.plot(kimg, y, marker=marker, markersize=4, label=key)
    ax.set_xlabel("kimg")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def metric_figure(records: Sequence[dict[str, Any]], axis_key: str, label: str) -> Any:
    """A figure of every metric in ``records`` against ``axis_key`` (``kimg`` or ``seconds``)."""
    plt = _pyplot()
    names = sorted(
        {
            k
            for r in records
            for k, v in r.items()
            if isinstance(v, (int, float)) and k not in NOT_METRICS
        }
    )
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        pts = [(r[axis_key], r[name]) for r in records if name in r and axis_key in r]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=name)
    ax.set_xlabel(label)
    ax.set_ylabel("metric (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


# Panels of plots/health.png: (title, keys, log scale).
HEALTH_PANELS = (
    ("D's mean logits", ("logits_real", "logits_fake"), False),
    ("D's sign accuracy (r_t = E[sign D(real)])", ("rt", "d_accuracy", "augment_p"), False),
    ("gradient norms", ("grad_norm_g", "grad_norm_d"), True),
    ("G_ema: diversity / reals', distance to G", ("diversity", "g_ema_distance"), False),
)
# The ``event`` of the records a health check and a rollback write (log.jsonl, loggers, meta);
# plots/health.png draws them as vertical lines.
HEALTH_EVENT, ROLLBACK_EVENT = "health", "rollback"
HEALTH_EVENTS = (HEALTH_EVENT, ROLLBACK_EVENT)


def health_figure(records: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]) -> Any:
    """``plots/health.png``: the health signals of the tick ``records`` in four panels against
    kimg, with every event (a health condition firing, a rollback) as a labelled vertical line;
    a curve (or a point) where values are finite, nothing where a signal was never logged."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    for ax, (title, keys, log) in zip(axes.flat, HEALTH_PANELS):
        for key in keys:
            pts = [
                (r["kimg"], r[key])
                for r in records
                if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
            ]
            if pts:
                marker = "o" if len(pts) <= MARKER_MAX_POINTS else None
                ax.plot(*zip(*pts), marker=marker, markersize=3, label=key)
        if log and ax.lines and all(min(line.get_ydata()) > 0 for line in ax.lines):
            ax.set_yscale("log")
        for e in events:
            color = "tab:red" if e.get("event") == ROLLBACK_EVENT else "tab:orange"
            ax.axvline(e.get("kimg", 0), color=color, linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="best", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("kimg")
    names = sorted({str(e.get("condition", e.get("event"))) for e in events})
    if names:
        fig.suptitle("events (dashed): " + ", ".join(names), fontsize=9)
    fig.tight_layout()
    return fig
