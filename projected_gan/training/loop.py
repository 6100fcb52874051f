"""Deprecated: ``Trainer`` moved to :mod:`projected_gan.training.trainer`; removed next release.

The loop is now split into ``step`` (one training step), ``fit`` (the schedule), ``state``
(checkpoints, counters, RNG) and ``run_dir`` (the run folder).
"""

import warnings

from projected_gan.training.run_dir import new_run_dir
from projected_gan.training.state import TrainingStopped
from projected_gan.training.step import ema_beta
from projected_gan.training.trainer import Trainer

warnings.warn(
    "projected_gan.training.loop moved to projected_gan.training.trainer (with step, fit, state "
    "and run_dir); the old path will be removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["Trainer", "TrainingStopped", "ema_beta", "new_run_dir"]
