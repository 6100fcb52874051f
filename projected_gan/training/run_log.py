"""What a run writes besides checkpoints: ``log.jsonl``, ``metrics.jsonl``, TensorBoard, plots.

Writing these is best effort: a full disk or a read-only folder makes the logger warn (once per
file) and training goes on. Checkpoints are the only writes a run stops for.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

from projected_gan.atomic import atomic_write_bytes

__all__ = ["RunLogger", "read_jsonl"]

LOSS_KEYS = ("loss_g", "loss_d", "loss_d_real", "loss_d_fake", "loss_r1")
# Up to this many ticks each point gets a marker: a line through one point draws nothing.
MARKER_MAX_POINTS = 30


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


def loss_figure(records: list[dict[str, Any]]) -> Any:
    """A matplotlib figure of each loss in ``LOSS_KEYS`` against kimg, one point per tick record."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

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


class RunLogger:
    """Appends tick and metric records, mirrors them to TensorBoard, redraws the plots."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.run_dir = run_dir
        self.plots = run_dir / "plots"
        self.ticks = read_jsonl(run_dir / "log.jsonl")
        self.metrics = read_jsonl(run_dir / "metrics.jsonl")
        self._warned: set[str] = set()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            except Exception:  # tensorboard is optional
                self._tb = None

    def _warn(self, what: str, exc: Exception) -> None:
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(f"could not write {what} ({exc}); training continues", stacklevel=3)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        try:
            with open(self.run_dir / name, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            self._warn(name, exc)

    def log_tick(self, record: dict[str, Any]) -> None:
        """One line per tick: kimg, img/s, losses, lr, memory, ..."""
        self.ticks.append(record)
        self._append("log.jsonl", record)
        self._scalars(record, prefix="train")
        self._plot_losses()

    def log_metrics(self, record: dict[str, Any]) -> None:
        """One line per evaluation: kimg, seconds, and one value per metric."""
        self.metrics.append(record)
        self._append("metrics.jsonl", record)
        self._append("log.jsonl", {"event": "metrics", **record})
        self._scalars(record, prefix="metrics")
        self._plot_metrics()

    def _scalars(self, record: dict[str, Any], prefix: str) -> None:
        if self._tb is None:
            return
        step = int(round(record.get("kimg", 0) * 1000))
        try:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in {"kimg", "tick"}:
                    self._tb.add_scalar(f"{prefix}/{key}", value, step)
            self._tb.flush()
        except OSError as exc:
            self._warn("tensorboard events", exc)

    def _save_figure(self, fig: Any, name: str) -> None:
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", dpi=100)
            atomic_write_bytes(self.plots / name, buf.getvalue())
        except OSError as exc:
            self._warn(f"plots/{name}", exc)
        finally:
            plt.close(fig)

    def _plot_losses(self) -> None:
        records = [r for r in self.ticks if "kimg" in r and "event" not in r]
        if records:
            self._save_figure(loss_figure(records), "losses.png")

    def _plot_metrics(self) -> None:
        if not self.metrics:
            return
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        names = sorted(
            {
                k
                for r in self.metrics
                for k, v in r.items()
                if isinstance(v, (int, float)) and k not in {"kimg", "seconds", "tick"}
            }
        )
        for axis_key, label, fname in (
            ("kimg", "kimg", "metrics_vs_kimg.png"),
            ("seconds", "training wall-clock (s)", "metrics_vs_time.png"),
        ):
            fig, ax = plt.subplots(figsize=(7, 4))
            for name in names:
                pts = [(r[axis_key], r[name]) for r in self.metrics if name in r and axis_key in r]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=name)
            ax.set_xlabel(label)
            ax.set_ylabel("metric (lower is better)")
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=8)
            fig.tight_layout()
            self._save_figure(fig, fname)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
