"""What the CLI commands do, as plain functions (the CLI only parses arguments).

One module per command family; each imports its heavy dependencies on use, so that
``projected-gan list`` stays quick.
"""

from projected_gan.commands.datasets import prepare_data
from projected_gan.commands.evaluation import evaluate_checkpoint, evaluate_image_folders
from projected_gan.commands.models import convert, export
from projected_gan.commands.sampling import generate, interpolate
from projected_gan.commands.training import train

__all__ = [
    "convert",
    "evaluate_checkpoint",
    "evaluate_image_folders",
    "export",
    "generate",
    "interpolate",
    "prepare_data",
    "train",
]
