"""The ``jsonl`` logger: ``log.jsonl``, ``metrics.jsonl`` and ``plots/`` in the run folder.

It is always on (a run lists it first whether or not the spec names it): the files are the
run's own record, which ``projected-gan`` and the benchmarks read back. The plots belong here
rather than in the trainer because they are drawn from these files' whole history (read back
at :meth:`~JsonlLogger.start`, so a resumed run's plot covers every session); other loggers
draw their own charts.

Writing is best effort: a full disk or a read-only folder warns once per file and training
goes on. Checkpoints are the only writes a run stops for.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from projected_gan.atomic import atomic_write_bytes
from projected_gan.loggers.base import Logger, LoggerWarning, RunInfo
from projected_gan.loggers.plots import HEALTH_EVENTS, health_figure, loss_figure, metric_figure
from projected_gan.registry import LOGGERS

__all__ = ["JsonlLogger", "read_jsonl"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (killed mid-write) is ignored."""
    records = []
    if not path.is_file():
        return records
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


@LOGGERS.register("jsonl")
class JsonlLogger(Logger):
    """log.jsonl (a line per tick), metrics.jsonl and plots/ in the run folder; always on.

    Args:
        plots: draw ``plots/losses.png`` and ``plots/health.png`` from the tick records, and
            ``plots/metrics_vs_kimg.png`` and ``plots/metrics_vs_time.png`` at every evaluation.
        redraw_seconds: redraw the tick plots at most once per this many seconds, and when the
            session ends (drawing both takes about a second: fast ticks would spend more time
            on it than on training).
    """

    def __init__(self, plots: bool = True, redraw_seconds: float = 30.0) -> None:
        self.plots = plots
        self.redraw_seconds = redraw_seconds
        self._drawn_at = time.monotonic()  # of the last tick plots (or of the start)
        self._pending = False  # tick records not drawn yet
        self.run_dir: Path | None = None
        self.ticks: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self._warned: set[str] = set()

    def start(self, run: RunInfo) -> None:
        self.run_dir = run.run_dir
        self._drawn_at, self._pending = time.monotonic(), False
        self.ticks = read_jsonl(run.run_dir / "log.jsonl")
        self.metrics = read_jsonl(run.run_dir / "metrics.jsonl")
        self._warned = set()

    def _folder(self) -> Path:
        if self.run_dir is None:
            raise RuntimeError("JsonlLogger: call start(RunInfo(run_dir, ...)) first")
        return self.run_dir

    def _warn(self, what: str, exc: Exception) -> None:
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(
                f"could not write {what} ({exc}); training continues", LoggerWarning, stacklevel=3
            )

    def _append(self, name: str, record: dict[str, Any]) -> None:
        try:
            with open(self._folder() / name, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            self._warn(name, exc)

    def log_scalars(self, values: Mapping[str, float], nimg: int) -> None:
        record = dict(values)
        self.ticks.append(record)
        self._append("log.jsonl", record)
        self._pending = True
        now = time.monotonic()
        if now - self._drawn_at >= self.redraw_seconds:
            self._draw()

    def log_event(self, event: Mapping[str, Any], nimg: int) -> None:
        record = dict(event)
        self.ticks.append(record)
        self._append("log.jsonl", record)

    def finish(self) -> None:
        if self._pending:
            self._draw()

    def _draw(self) -> None:
        self._drawn_at, self._pending = time.monotonic(), False
        if not self.plots:
            return
        ticks = [r for r in self.ticks if "kimg" in r and "event" not in r]
        if ticks:
            events = [r for r in self.ticks if r.get("event") in HEALTH_EVENTS]
            self._save_figure(loss_figure(ticks), "losses.png")
            self._save_figure(health_figure(ticks, events), "health.png")

    def log_metrics(self, values: Mapping[str, float], nimg: int) -> None:
        record = dict(values)
        self.metrics.append(record)
        self._append("metrics.jsonl", record)
        self._append("log.jsonl", {"event": "metrics", **record})
        if self.plots:
            for axis_key, label, name in (
                ("kimg", "kimg", "metrics_vs_kimg.png"),
                ("seconds", "training wall-clock (s)", "metrics_vs_time.png"),
            ):
                self._save_figure(metric_figure(self.metrics, axis_key, label), name)

    def _save_figure(self, fig: Any, name: str) -> None:
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", dpi=100)
            atomic_write_bytes(self._folder() / "plots" / name, buf.getvalue())
        except OSError as exc:
            self._warn(f"plots/{name}", exc)
        finally:
            plt.close(fig)
