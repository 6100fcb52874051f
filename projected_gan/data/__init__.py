"""Training data: image folders and zips -> a decoded, mapped cache (or decoding on the fly)
-> endless batches.

    >>> ds = load_image_dataset(default_dataset_path(), 64, conditional=True)  # shipped flowers
    >>> images, labels = next(InfiniteBatches(ds, 8, mirror=True))  # uint8 (8, 3, 64, 64)
    >>> x = to_float(images)  # float32 in [-1, 1]

Any size ``(H, W)`` (images of another aspect cropped, padded or stretched), 1 to 16 channels
(1 luma, 2 luma + alpha, 3 RGB, 4 RGBA; more from ``.npy`` arrays). ``files`` lists folders and
zips; ``decode`` turns files into uint8 arrays ``(C, H, W)`` (``arrays`` reads ``.npy``); ``labels``
reads ``dataset.json`` or class folders; ``store`` keeps the decoded cache (a raw file mapped by
every process); ``stream`` decodes on the fly; ``datasets`` holds :class:`ImageDataset` and
:class:`StreamingDataset`, ``load`` the loader; ``batches`` the resumable
:class:`InfiniteBatches`.
"""

from projected_gan.data.batches import InfiniteBatches
from projected_gan.data.datasets import ImageDataset, StreamingDataset, default_dataset_path
from projected_gan.data.decode import prepare_array, prepare_image
from projected_gan.data.files import (
    ARRAY_EXTENSIONS,
    CACHE_ENV,
    IMAGE_EXTENSIONS,
    DataError,
    DataWarning,
    default_cache_dir,
)
from projected_gan.data.load import STORAGES, load_dataset, load_image_dataset
from projected_gan.data.spec import DataSpec
from projected_gan.images import to_float

__all__ = [
    "ARRAY_EXTENSIONS",
    "CACHE_ENV",
    "IMAGE_EXTENSIONS",
    "STORAGES",
    "DataError",
    "DataSpec",
    "DataWarning",
    "ImageDataset",
    "InfiniteBatches",
    "StreamingDataset",
    "default_cache_dir",
    "default_dataset_path",
    "load_dataset",
    "load_image_dataset",
    "prepare_array",
    "prepare_image",
    "to_float",
]
