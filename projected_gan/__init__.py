"""projected-gan: Projected GANs (Sauer et al., NeurIPS 2021) as swappable, registered parts.

The registries (``FEATURE_NETWORKS``, ``PROJECTION_HEADS``, ``DISCRIMINATORS``, ``GENERATORS``,
``LOSSES``, ``AUGMENTATIONS``, ``METRICS``, ``LOGGERS``) are filled with the built-in parts when
this package is imported; plugins from other distributions are found lazily through entry points.
"""

# Importing the part subpackages registers the built-ins.
from projected_gan import (
    augmentations,
    data,
    discriminators,
    generators,
    loggers,
    losses,
    metrics,
    projectors,
    sources,
)
from projected_gan._version import __version__
from projected_gan.configs import part_config
from projected_gan.data import InfiniteBatches, load_image_dataset
from projected_gan.discriminators import ProjectedDiscriminator, SplitLogits
from projected_gan.errors import InputError
from projected_gan.inference import load_generator
from projected_gan.precision import PRECISIONS, cpu_has_native_bf16, resolve_precision
from projected_gan.registry import (
    AUGMENTATIONS,
    DISCRIMINATORS,
    FEATURE_NETWORKS,
    GENERATORS,
    LOGGERS,
    LOSSES,
    METRICS,
    PROJECTION_HEADS,
    REGISTRIES,
    PluginError,
    PluginWarning,
    Registry,
    UnknownPartError,
    create,
    create_from_config,
    get_registry,
    list_parts,
)

# The training pipeline is imported on first use, so that using a trained generator
# (projected_gan.inference) does not load the trainer.
_TRAINING_NAMES = ("HealthStopped", "HealthWarning", "Trainer", "build_from_spec", "init_from")
_SPEC_NAMES = ("ExperimentSpec", "SpecError")


def __getattr__(name: str):
    if name == "official":  # the official code's network pickles, imported on first use
        import projected_gan.official as official

        return official
    if name == "spec" or name in _SPEC_NAMES:
        import projected_gan.spec as spec

        return spec if name == "spec" else getattr(spec, name)
    if name == "training" or name in _TRAINING_NAMES:
        import projected_gan.training as training

        return training if name == "training" else getattr(training, name)
    raise AttributeError(f"module 'projected_gan' has no attribute {name!r}")


__all__ = [
    "AUGMENTATIONS",
    "DISCRIMINATORS",
    "FEATURE_NETWORKS",
    "GENERATORS",
    "LOGGERS",
    "LOSSES",
    "METRICS",
    "PRECISIONS",
    "PROJECTION_HEADS",
    "REGISTRIES",
    "ExperimentSpec",
    "HealthStopped",
    "HealthWarning",
    "InfiniteBatches",
    "InputError",
    "PluginError",
    "PluginWarning",
    "ProjectedDiscriminator",
    "Registry",
    "SpecError",
    "SplitLogits",
    "Trainer",
    "UnknownPartError",
    "__version__",
    "augmentations",
    "build_from_spec",
    "cpu_has_native_bf16",
    "create",
    "create_from_config",
    "data",
    "discriminators",
    "generators",
    "get_registry",
    "init_from",
    "list_parts",
    "load_generator",
    "load_image_dataset",
    "loggers",
    "losses",
    "metrics",
    "official",
    "part_config",
    "projectors",
    "resolve_precision",
    "sources",
    "spec",
    "training",
]
