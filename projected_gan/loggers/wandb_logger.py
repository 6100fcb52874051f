"""The ``wandb`` logger: a Weights & Biases run per training run, resumed with it.

Needs the ``wandb`` package (``pip install -e ".[wandb]"``). The W&B run's id is kept in
``<run>/wandb/run_id``, so ``projected-gan train --resume RUN`` continues the same W&B run;
W&B's own files go under ``<run>/wandb/`` too. ``WANDB_MODE=offline`` (or ``mode: offline``)
logs without any network access into ``<run>/wandb/offline-run-*``, which ``wandb sync``
uploads later.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from projected_gan.atomic import atomic_write_text
from projected_gan.errors import PartBuildError
from projected_gan.loggers.base import Logger, RunInfo, missing_extra
from projected_gan.registry import LOGGERS

__all__ = ["WandbLogger"]

MODES = ("online", "offline", "disabled")
# Tick keys that are the x axis or a counter, not a curve.
NOT_CURVES = frozenset({"kimg", "tick"})


@LOGGERS.register("wandb")
class WandbLogger(Logger):
    """Weights & Biases: spec as config, ticks, metrics, sample grids; resumes the same run.

    Charts are ``train/<key>`` (losses, learning rates, img/s, ...), ``metrics/<name>`` and
    ``samples/fakes`` / ``samples/reals``, all against ``kimg``.

    Args:
        project: the W&B project.
        entity: the W&B team or user; None = your default entity.
        name: the W&B run's display name; None = the run folder's name.
        tags: tags of the W&B run.
        group: group of the W&B run (e.g. the seeds of one experiment); None = none.
        notes: a description of the run.
        mode: ``online``, ``offline`` or ``disabled``; None = ``$WANDB_MODE``, else online.
        images: also log the sample grids.
    """

    def __init__(
        self,
        project: str = "projected-gan",
        entity: str | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        group: str | None = None,
        notes: str | None = None,
        mode: str | None = None,
        images: bool = True,
    ) -> None:
        try:
            import wandb
        except ImportError:
            raise missing_extra("wandb", "wandb", "wandb") from None
        if mode is not None and mode not in MODES:
            raise PartBuildError(
                f"mode must be one of {', '.join(MODES)} or null, got {mode!r}", field="mode"
            )
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise PartBuildError(f"tags must be a list of strings, got {tags!r}", field="tags")
        self._wandb = wandb
        self.project, self.entity, self.name = project, entity, name
        self.tags, self.group, self.notes = list(tags), group, notes
        self.mode, self.images = mode, images
        self._run: Any = None

    def start(self, run: RunInfo) -> None:
        wandb = self._wandb
        id_file = run.run_dir / "wandb" / "run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else ""
        if not run_id:
            # Kept before the W&B run exists, so any later session of this run resumes it.
            run_id = secrets.token_hex(6)  # W&B ids: lowercase letters and digits
            atomic_write_text(id_file, run_id + "\n")
        self._run = wandb.init(
            project=self.project,
            entity=self.entity,
            name=self.name or run.name,
            tags=self.tags,
            group=self.group,
            notes=self.notes,
            mode=self.mode,
            dir=str(run.run_dir),
            id=run_id,
            resume="allow",
            # Our own run object, whatever else the process does with wandb; no console
            # capture (the progress bar stays ours) and no banner.
            settings=wandb.Settings(reinit="create_new", console="off", silent=True),
        )
        self._run.config.update(dict(run.spec), allow_val_change=True)
        self._run.define_metric("kimg")
        for section in ("train", "metrics", "samples"):
            self._run.define_metric(f"{section}/*", step_metric="kimg")

    def _log(self, section: str, values: Mapping[str, Any], nimg: int) -> None:
        row = {f"{section}/{k}": v for k, v in values.items() if k not in NOT_CURVES}
        self._run.log({"kimg": nimg / 1000, **row})

    def log_scalars(self, values: Mapping[str, float], nimg: int) -> None:
        numbers = {k: v for k, v in values.items() if isinstance(v, (int, float))}
        self._log("train", numbers, nimg)

    def log_metrics(self, values: Mapping[str, float], nimg: int) -> None:
        numbers = {k: v for k, v in values.items() if isinstance(v, (int, float))}
        self._log("metrics", numbers, nimg)

    def log_event(self, event: Mapping[str, Any], nimg: int) -> None:
        # W&B keeps the record as a row of an events table and on the run page's summary.
        self._run.log({"kimg": nimg / 1000, f"events/{event.get('event', 'event')}": dict(event)})

    def log_images(self, images: Mapping[str, np.ndarray], nimg: int) -> None:
        if self.images:
            wandb = self._wandb
            self._log("samples", {k: wandb.Image(v) for k, v in images.items()}, nimg)

    def finish(self) -> None:
        if self._run is not None:
            run, self._run = self._run, None
            run.finish()
