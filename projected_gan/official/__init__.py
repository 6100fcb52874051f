"""The official Projected GAN code's network pickles, read safely and mapped onto our parts.

``read_network_pickle(path)`` reads a ``network-snapshot*.pkl`` / ``best_model.pkl`` of the
official training loop or one of the models its authors released, without running anything in
it, and returns :class:`OfficialNetworks`: our generator config and G / G_ema / D's heads as
state dicts under our names. :func:`generator_from_pickle` builds our G_ema from it, and
:func:`convert_network_pickle` writes an export folder (``projected-gan convert PKL OUT``).
"""

from projected_gan.official.convert import convert_network_pickle, generator_from_pickle
from projected_gan.official.reader import OfficialNetworks, read_network_pickle
from projected_gan.official.unpickle import (
    ALLOWED_CLASSES,
    KNOWN_SOURCES,
    PERSISTENT_CLASSES,
    OfficialPickleError,
)

__all__ = [
    "ALLOWED_CLASSES",
    "KNOWN_SOURCES",
    "PERSISTENT_CLASSES",
    "OfficialNetworks",
    "OfficialPickleError",
    "convert_network_pickle",
    "generator_from_pickle",
    "read_network_pickle",
]
