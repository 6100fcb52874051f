"""The training pipeline: spec, build_from_spec, the step, the fit loop, run folder and logs."""

from projected_gan.checkpoint import CheckpointError, load_checkpoint
from projected_gan.data import (
    DataError,
    ImageDataset,
    InfiniteBatches,
    default_dataset_path,
    load_image_dataset,
)
from projected_gan.training.build import build_from_spec
from projected_gan.training.loop import Trainer, TrainingStopped
from projected_gan.training.spec import ExperimentSpec, SpecError, list_presets

__all__ = [
    "CheckpointError",
    "DataError",
    "ExperimentSpec",
    "ImageDataset",
    "InfiniteBatches",
    "SpecError",
    "Trainer",
    "TrainingStopped",
    "build_from_spec",
    "default_dataset_path",
    "list_presets",
    "load_checkpoint",
    "load_image_dataset",
]
