"""A run's loggers: built from ``output.loggers`` on rank 0, fed by the trainer.

The loggers themselves (``jsonl``, ``tensorboard``, ``wandb``, plugins) live in
:mod:`projected_gan.loggers`; this module only turns the spec into logger objects and sample
images into the arrays loggers take.
"""

from __future__ import annotations

from projected_gan.errors import PartBuildError
from projected_gan.loggers import Logger
from projected_gan.registry import LOGGERS
from projected_gan.spec import ExperimentSpec
from projected_gan.spec.checks import SpecError

__all__ = ["build_loggers"]

ALWAYS_ON = "jsonl"  # the run's own record: projected-gan and the benchmarks read it back


def build_loggers(spec: ExperimentSpec) -> list[tuple[str, Logger]]:
    """``(name, logger)`` for each of ``output.loggers``, with ``jsonl`` first when the spec
    does not list it; nothing is started or written yet.

    A logger whose package is missing raises its one-line :class:`InputError` naming the extra
    to install; a refused argument value a :class:`SpecError` at ``output.loggers.<i>``.
    """
    built = []
    for i, part in enumerate(spec.output.loggers):
        try:
            built.append((part.name, LOGGERS.create(part.name, **part.kwargs)))
        except PartBuildError as exc:
            where = f"output.loggers.{i}" + (f".{exc.field}" if exc.field else "")
            raise SpecError([(where, str(exc))]) from None
    if all(name != ALWAYS_ON for name, _ in built):
        built.insert(0, (ALWAYS_ON, LOGGERS.create(ALWAYS_ON)))
    return built
