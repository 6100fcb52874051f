"""Generators: FastGAN, FastGAN-lite and StyleGAN2 behind one :class:`Generator` interface.

Importing this package registers ``fastgan``, ``fastgan_lite`` and ``stylegan2`` in
:data:`projected_gan.registry.GENERATORS`.
"""

from projected_gan.generators.fastgan import (
    ConditionalBatchNorm2d,
    FastGANGenerator,
    FastGANLiteGenerator,
    SkipLayerExcitation,
    fastgan,
    fastgan_channels,
    fastgan_lite,
)
from projected_gan.generators.layers import (
    NOISE_MODES,
    SUPPORTED_RESOLUTIONS,
    Generator,
    LabelEmbedding,
    NoiseInjection,
    normalize_2nd_moment,
)
from projected_gan.generators.sampling import (
    interpolation_frames,
    latents_from_seeds,
    lerp,
    parse_seeds,
    slerp,
)
from projected_gan.generators.stylegan2 import (
    MappingNetwork,
    StyleGAN2Generator,
    SynthesisNetwork,
    modulated_conv2d,
    stylegan2,
)

__all__ = [
    "NOISE_MODES",
    "SUPPORTED_RESOLUTIONS",
    "ConditionalBatchNorm2d",
    "FastGANGenerator",
    "FastGANLiteGenerator",
    "Generator",
    "LabelEmbedding",
    "MappingNetwork",
    "NoiseInjection",
    "SkipLayerExcitation",
    "StyleGAN2Generator",
    "SynthesisNetwork",
    "fastgan",
    "fastgan_channels",
    "fastgan_lite",
    "interpolation_frames",
    "latents_from_seeds",
    "lerp",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "parse_seeds",
    "slerp",
    "stylegan2",
]
