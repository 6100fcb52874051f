"""The training pipeline: spec, build_from_spec, the step, the fit loop, run folder and logs.

spec.py, spec_checks.py, spec_io.py   what a run is (validated, presets, overrides)
assemble.py, build.py                 the parts of a run made from a spec
step.py                               one G + D step, EMA, optimisers
fit.py                                the schedule: ticks, samples, metrics, snapshots
state.py, run_dir.py                  checkpoints, counters, RNG; the run folder
trainer.py                            ``Trainer``: all of the above together
init_source.py, init_weights.py       start from trained weights (train.init, ``init_from``)
run_log.py                            the run's loggers (projected_gan.loggers), from the spec
"""

from projected_gan.checkpoint import CheckpointError, load_checkpoint
from projected_gan.data import (
    DataError,
    ImageDataset,
    InfiniteBatches,
    default_dataset_path,
    load_image_dataset,
)
from projected_gan.training.build import build_from_spec
from projected_gan.training.init_source import InitError, InitSource, read_init_source
from projected_gan.training.init_weights import InitReport, ModuleReport, init_from
from projected_gan.training.spec import ExperimentSpec, SpecError, list_presets
from projected_gan.training.state import TrainingStopped
from projected_gan.training.trainer import Trainer

__all__ = [
    "CheckpointError",
    "DataError",
    "ExperimentSpec",
    "ImageDataset",
    "InfiniteBatches",
    "InitError",
    "InitReport",
    "InitSource",
    "ModuleReport",
    "SpecError",
    "Trainer",
    "TrainingStopped",
    "build_from_spec",
    "default_dataset_path",
    "init_from",
    "list_presets",
    "load_checkpoint",
    "load_image_dataset",
    "read_init_source",
]
