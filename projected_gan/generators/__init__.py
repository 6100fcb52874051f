"""Generators: FastGAN, FastGAN-lite and StyleGAN2 behind one :class:`Generator` interface.

Sizes: squares 32 ... 1024 and non-square ``(H, W)`` by one rule for every family
(:func:`check_image_size`); 1 to 16 channels.

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
    MAX_CHANNELS,
    NOISE_MODES,
    SUPPORTED_RESOLUTIONS,
    Generator,
    LabelEmbedding,
    NoiseInjection,
    check_image_size,
    first_block_size,
    normalize_2nd_moment,
    stage_size,
)
from projected_gan.generators.sampling import (
    image_size,
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
    "MAX_CHANNELS",
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
    "check_image_size",
    "fastgan",
    "fastgan_channels",
    "fastgan_lite",
    "first_block_size",
    "image_size",
    "interpolation_frames",
    "latents_from_seeds",
    "lerp",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "parse_seeds",
    "slerp",
    "stage_size",
    "stylegan2",
]
