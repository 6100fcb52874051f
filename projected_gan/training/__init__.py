"""The training pipeline: build_from_spec, the step, the fit loop, run folder and logs.

assemble.py                           spec -> the parts of a run, and a run's parts -> its spec
step.py                               one G + D step, EMA, optimisers
fit.py                                the schedule: ticks, samples, metrics, snapshots
state.py, run_dir.py                  checkpoints, counters, RNG; the run folder
trainer.py                            ``Trainer`` (and ``build_from_spec``, ``Trainer.resume``)
init_source.py, init_weights.py       start from trained weights (train.init, ``init_from``)
health.py, health_signals.py          a run's health: conditions from the signals, and their record
recovery.py                           what a run does when a condition fires: warn, stop, roll back
run_log.py                            the run's loggers (projected_gan.loggers), from the spec

What a run is (the spec) lives in :mod:`projected_gan.spec`, data in :mod:`projected_gan.data`,
checkpoint files in :mod:`projected_gan.checkpoint`.
"""

from projected_gan.training.health import HealthMonitor
from projected_gan.training.init_source import InitError, InitSource, read_init_source
from projected_gan.training.init_weights import InitReport, ModuleReport, init_from
from projected_gan.training.recovery import HealthStopped, HealthWarning
from projected_gan.training.state import TrainingStopped
from projected_gan.training.trainer import Trainer, build_from_spec

__all__ = [
    "HealthMonitor",
    "HealthStopped",
    "HealthWarning",
    "InitError",
    "InitReport",
    "InitSource",
    "ModuleReport",
    "Trainer",
    "TrainingStopped",
    "build_from_spec",
    "init_from",
    "read_init_source",
]
