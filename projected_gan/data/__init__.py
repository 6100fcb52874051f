"""Training data: image folders and zips -> a cached uint8 tensor -> endless batches.

    >>> ds = load_image_dataset(default_dataset_path(), 64, use_labels=True)  # shipped flowers
    >>> images, labels = next(InfiniteBatches(ds, 8, mirror=True))  # uint8 (8, 3, 64, 64)

``files`` reads folders and zips and keeps the decoded cache; ``datasets`` holds
:class:`ImageDataset` and its loader; ``batches`` the resumable :class:`InfiniteBatches`.
"""

from projected_gan.data.batches import InfiniteBatches
from projected_gan.data.datasets import (
    ImageDataset,
    default_dataset_path,
    load_image_dataset,
    to_float,
)
from projected_gan.data.files import (
    CACHE_ENV,
    IMAGE_EXTENSIONS,
    DataError,
    DataWarning,
    default_cache_dir,
    prepare_image,
)

__all__ = [
    "CACHE_ENV",
    "IMAGE_EXTENSIONS",
    "DataError",
    "DataWarning",
    "ImageDataset",
    "InfiniteBatches",
    "default_cache_dir",
    "default_dataset_path",
    "load_image_dataset",
    "prepare_image",
    "to_float",
]
