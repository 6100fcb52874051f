"""The ``health`` section of a spec: which signals a run watches, when a condition fires, and
what the run does then.

Four named conditions, each with a default threshold and an ``action``:

- ``divergence``: a non-finite loss or gradient in a tick, a loss beyond ``loss_limit``, or a
  gradient norm beyond ``grad_factor`` times its median over the run's earlier ticks;
- ``collapse``: the diversity of a fixed batch of G_ema samples falls below ``threshold`` times
  the reals' for ``patience`` measurements in a row (after it once was above);
- ``overfitting``: D's sign accuracy on reals, r_t = E[sign(D(real))], stays at or above
  ``threshold`` for ``patience_kimg`` thousand images;
- ``metric_worse``: the first metric gets worse at ``evaluations`` evaluations in a row.

``action`` is ``warn`` (log it and go on), ``stop`` (save, then end with a one-line reason and
exit code 3) or ``rollback`` (go back to the best or last healthy snapshot with a lower learning
rate and a new data order, at most ``rollback.max`` times; then stop).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CollapseSpec",
    "DivergenceSpec",
    "HealthSpec",
    "MetricWorseSpec",
    "OverfittingSpec",
    "RollbackSpec",
]

Action = Literal["warn", "stop", "rollback"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DivergenceSpec(_Section):
    """Non-finite values, an exploding loss or an exploding gradient norm."""

    action: Action = "warn"
    loss_limit: float = Field(
        1000.0, gt=0, description="a tick's mean |loss| (any loss) above this is divergence"
    )
    grad_factor: float = Field(
        1000.0,
        gt=1,
        description="a G or D gradient norm above this many times its median over earlier "
        "ticks is divergence",
    )
    warmup_ticks: int = Field(
        5, ge=1, description="ticks of gradient norms to collect before comparing to them"
    )


class CollapseSpec(_Section):
    """G_ema's samples losing their variety (mode collapse)."""

    action: Action = "warn"
    threshold: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="diversity of G_ema's samples divided by the reals' below this is collapse",
    )
    patience: int = Field(2, ge=1, description="measurements in a row below the threshold")


class OverfittingSpec(_Section):
    """D telling the training reals apart with certainty for a long time."""

    action: Action = "warn"
    threshold: float = Field(
        0.95, gt=0, le=1, description="r_t = E[sign(D(real))] at or above this is saturated"
    )
    patience_kimg: float = Field(
        2.0, gt=0, description="thousand images in a row with r_t saturated"
    )


class MetricWorseSpec(_Section):
    """The first metric (lower is better) rising evaluation after evaluation."""

    action: Action = "warn"
    evaluations: int = Field(
        3, ge=1, description="evaluations in a row, each worse than the one before"
    )


class RollbackSpec(_Section):
    """What the ``rollback`` action changes when it goes back."""

    max: int = Field(2, ge=0, description="rollbacks per run; one more firing stops the run")
    to: Literal["best", "healthy"] = Field(
        "best",
        description="best: the best-metric snapshot (else the last healthy one); healthy: the "
        "newest snapshot taken while no condition was firing",
    )
    lr_factor: float = Field(
        0.5, gt=0, le=1, description="G's and D's learning rates are multiplied by this"
    )
    new_data_order: bool = Field(True, description="draw the data order from a new seed")


class HealthSpec(_Section):
    """Signals logged at every tick, the conditions watched, and the responses."""

    diversity_samples: int = Field(
        32,
        ge=0,
        description="G_ema samples (and reals) whose mean pairwise feature distance is the "
        "diversity signal, in the metrics' feature space; 0 turns diversity (and collapse) off",
    )
    diversity_every: float | None = Field(
        None, gt=0, description="kimg between diversity measurements; null = every tick"
    )
    divergence: DivergenceSpec = DivergenceSpec()
    collapse: CollapseSpec = CollapseSpec()
    overfitting: OverfittingSpec = OverfittingSpec()
    metric_worse: MetricWorseSpec = MetricWorseSpec()
    rollback: RollbackSpec = RollbackSpec()
