"""Experiment loggers: where a run's numbers and sample grids go (the ``loggers`` registry).

Built-ins: ``jsonl`` (``log.jsonl``, ``metrics.jsonl``, ``plots/``; always on),
``tensorboard`` (the ``tensorboard`` extra) and ``wandb`` (the ``wandb`` extra). A spec names
them in ``output.loggers``; a plugin adds one through the entry-point group
``projected_gan.loggers`` with a :class:`Logger` subclass. Only rank 0 of a distributed run
logs, and a failing logger warns once and never stops training (:class:`LoggerGroup`).
"""

from projected_gan.loggers.base import Logger, LoggerGroup, LoggerWarning, RunInfo
from projected_gan.loggers.jsonl import JsonlLogger, read_jsonl
from projected_gan.loggers.tensorboard_logger import TensorBoardLogger
from projected_gan.loggers.wandb_logger import WandbLogger

__all__ = [
    "JsonlLogger",
    "Logger",
    "LoggerGroup",
    "LoggerWarning",
    "RunInfo",
    "TensorBoardLogger",
    "WandbLogger",
    "read_jsonl",
]
