"""The calls a run makes to an experiment logger, and the group that isolates their failures.

A run (rank 0 only) calls, in order: :meth:`Logger.start` once per training session (a new run, or a
resume in a new process), then any number of :meth:`~Logger.log_scalars` (one per tick),
:meth:`~Logger.log_images` (sample grids), :meth:`~Logger.log_metrics` (each evaluation) and
:meth:`~Logger.log_event` (a health condition, a rollback), then :meth:`~Logger.finish`. The same
object may see several sessions (``fit`` called again).

A logger only observes: :class:`LoggerGroup` calls every logger of a run and turns any exception
into one warning per logger, so a logger that fails (network down, disk full, a bug in a plugin)
never stops training or touches a checkpoint.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from projected_gan.errors import InputError

__all__ = ["Logger", "LoggerGroup", "LoggerWarning", "RunInfo", "missing_extra"]


class LoggerWarning(UserWarning):
    """A logger failed; the run goes on without what it could not write."""


def missing_extra(logger: str, module: str, extra: str) -> InputError:
    """The error for a logger whose optional package is not installed: one line naming the
    extra to install (the command line turns it into exit code 2)."""
    return InputError(
        f"the {logger} logger needs the {module!r} package, which is not installed: "
        f'pip install -e ".[{extra}]" (or pip install {module})',
        field="output.loggers",
    )


@dataclass(frozen=True)
class RunInfo:
    """What a logger is told when a training session starts.

    Attributes:
        run_dir: the run folder (exists; loggers may write under it).
        spec: the resolved experiment spec as plain JSON (``ExperimentSpec.to_dict()``).
        nimg: real images shown so far (0 for a new run; the checkpoint's count on resume).
    """

    run_dir: Path
    spec: Mapping[str, Any]
    nimg: int = 0

    @property
    def name(self) -> str:
        """The run folder's name, e.g. ``00003-fastgan_lite-flowers64-64-b16``."""
        return self.run_dir.name

    @property
    def resumed(self) -> bool:
        """Whether this session continues a run that already trained."""
        return self.nimg > 0


class Logger:
    """Base class of experiment loggers (the ``loggers`` registry). Override what you need.

    Every method does nothing by default. ``nimg`` is the number of real images shown so far
    (all processes): the x axis of a run. Constructors should only store their arguments and
    check that their package is installed (raise :class:`~projected_gan.errors.InputError`
    naming the ``pip install`` otherwise); connections and files belong in :meth:`start`.
    """

    def start(self, run: RunInfo) -> None:
        """A training session of ``run`` begins (called again after :meth:`finish` on resume)."""

    def log_scalars(self, values: Mapping[str, float], nimg: int) -> None:
        """One tick: ``tick``, ``kimg``, ``seconds``, ``img_per_s``, ``sec_per_kimg``,
        ``lr_g``, ``lr_d``, ``bad_steps``, the mean losses (``loss_g``, ``loss_d``, ...)
        since the last tick, and ``peak_mem_gb`` on CUDA. Plain Python numbers."""

    def log_images(self, images: Mapping[str, np.ndarray], nimg: int) -> None:
        """Image grids, uint8 ``(H, W, C)`` with C = 1 or 3: ``reals`` once at the start of a
        run, ``fakes`` (G_ema's fixed-latent grid) at every sample interval."""

    def log_metrics(self, values: Mapping[str, float], nimg: int) -> None:
        """One evaluation: ``kimg``, ``seconds`` (training wall-clock), ``eval_seconds`` and
        one value per metric result (``fid``, ``fd``, ``kid``, ...; lower is better)."""

    def log_event(self, event: Mapping[str, Any], nimg: int) -> None:
        """Something that happened to the run, as plain JSON: ``event`` (its kind: ``health``
        when a health condition fired, ``rollback`` when the run went back to a snapshot),
        ``kimg`` and the kind's own fields (``condition``, ``value``, ``threshold``,
        ``action``, ``message`` for ``health``)."""

    def finish(self) -> None:
        """The session ends (end of ``fit``, Ctrl-C, or an error): flush and close."""


class LoggerGroup:
    """Calls each logger of a run in turn; a failing logger warns once and training goes on.

    Policy: after a failed :meth:`Logger.start` the logger is skipped for the rest of the
    session (it has nothing to write to). A failure in any other call is reported once per
    logger and session, and the logger keeps being called: a transient failure (a network
    blip, a disk that was full) costs only the records it lost. ``KeyboardInterrupt`` and
    ``SystemExit`` pass through.

    Args:
        loggers: ``(name, logger)`` pairs; the name is what warnings call the logger.
    """

    def __init__(self, loggers: Sequence[tuple[str, Logger]]) -> None:
        self.loggers = list(loggers)
        self._dead: set[int] = set()
        self._warned: set[int] = set()

    def _call(self, method: str, *args: Any) -> None:
        for i, (name, logger) in enumerate(self.loggers):
            if i in self._dead:
                continue
            try:
                # Each logger gets its own dicts: one that edits them cannot change the others'.
                getattr(logger, method)(*(dict(a) if isinstance(a, Mapping) else a for a in args))
            except Exception as exc:
                if method == "start":
                    self._dead.add(i)
                if i not in self._warned:
                    self._warned.add(i)
                    then = (
                        "it is off for this session"
                        if method == "start"
                        else "further failures of it are not reported"
                    )
                    warnings.warn(
                        f"logger {name!r} failed in {method}: {type(exc).__name__}: {exc}; "
                        f"training continues ({then})",
                        LoggerWarning,
                        stacklevel=3,
                    )

    def start(self, run: RunInfo) -> None:
        """Start every logger (a failed one is skipped until the next session)."""
        self._dead.clear()
        self._warned.clear()
        self._call("start", run)

    def log_scalars(self, values: Mapping[str, float], nimg: int) -> None:
        self._call("log_scalars", values, nimg)

    def log_images(self, images: Mapping[str, np.ndarray], nimg: int) -> None:
        self._call("log_images", images, nimg)

    def log_metrics(self, values: Mapping[str, float], nimg: int) -> None:
        self._call("log_metrics", values, nimg)

    def log_event(self, event: Mapping[str, Any], nimg: int) -> None:
        self._call("log_event", event, nimg)

    def finish(self) -> None:
        self._call("finish")
