"""The ``tensorboard`` logger: TensorBoard event files in ``<run>/tensorboard``.

Needs the ``tensorboard`` package (``pip install -e ".[tensorboard]"``), which
``torch.utils.tensorboard`` writes through. View with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from projected_gan.loggers.base import Logger, RunInfo, missing_extra
from projected_gan.registry import LOGGERS

__all__ = ["TensorBoardLogger"]

# Tick keys that are the x axis or a counter, not a curve.
NOT_CURVES = frozenset({"kimg", "tick"})


@LOGGERS.register("tensorboard")
class TensorBoardLogger(Logger):
    """TensorBoard events in the run's tensorboard/ folder: tick scalars, metrics, sample grids.

    Scalars are ``train/<key>`` and ``metrics/<name>``, images ``samples/fakes`` and
    ``samples/reals``, all at step = images seen. A resumed run purges the events written after
    its checkpoint (the steps it trains again).

    Args:
        images: also write the sample grids (they make the event file grow by one PNG each).
    """

    def __init__(self, images: bool = True) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing_extra("tensorboard", "tensorboard", "tensorboard") from None
        self._writer_class = SummaryWriter
        self.images = images
        self._writer: Any = None

    def start(self, run: RunInfo) -> None:
        self._writer = self._writer_class(
            log_dir=str(run.run_dir / "tensorboard"),
            purge_step=run.nimg if run.resumed else None,
        )

    def _scalars(self, values: Mapping[str, float], nimg: int, prefix: str) -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and key not in NOT_CURVES:
                self._writer.add_scalar(f"{prefix}/{key}", value, nimg)
        self._writer.flush()

    def log_scalars(self, values: Mapping[str, float], nimg: int) -> None:
        self._scalars(values, nimg, "train")

    def log_metrics(self, values: Mapping[str, float], nimg: int) -> None:
        self._scalars(values, nimg, "metrics")

    def log_event(self, event: Mapping[str, Any], nimg: int) -> None:
        text = ", ".join(f"{k}: {v}" for k, v in event.items())
        self._writer.add_text(f"events/{event.get('event', 'event')}", text, nimg)
        self._writer.flush()

    def log_images(self, images: Mapping[str, np.ndarray], nimg: int) -> None:
        if not self.images:
            return
        for name, image in images.items():
            gray = image.ndim == 3 and image.shape[-1] == 1
            self._writer.add_image(
                f"samples/{name}",
                image[..., 0] if gray else image,
                nimg,
                dataformats="HW" if gray else "HWC",
            )
        self._writer.flush()

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
