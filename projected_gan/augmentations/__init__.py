"""Differentiable augmentation of every discriminator input; importing this registers the ops.

DiffAugment (Zhao et al., 2020): each op draws its parameters per sample and applies them with
one pure tensor expression; consecutive colour ops and consecutive geometric ops are fused.
Adaptive augmentation (StyleGAN2-ADA, Karras et al., 2020) applies any of them with a
probability tuned during training from D's outputs on reals; Diffusion-GAN (Wang et al., 2023)
adds Gaussian diffusion noise whose depth the same controller tunes.

adaptive.py      ``OverfittingController``: ADA's controller of p (D's r_t on reals);
                 ``AdaptiveAugment``: per-sample probability p of the inner augmentation
diffusion.py     ``DiffusionAugment``: Diffusion-GAN's noise on images or feature maps
diffaugment.py   the policy: parse it, group runs of one family, run them (``DiffAugment``);
                 ``build_augment``: an augmentation from a policy, a name or a dict
color.py         colour ops, folded into one per-sample affine pass (colour channels only)
geometric.py     geometric ops, folded into one nearest-neighbour ``grid_sample``
op_base.py       what the ops share: the policy tag, input checks, per-sample random draws
"""

from projected_gan.augmentations.adaptive import (
    AdaptiveAugment,
    OverfittingController,
    inner_augment,
)
from projected_gan.augmentations.color import (
    Brightness,
    Color,
    ColorOp,
    Contrast,
    PixelAffine,
    Saturation,
    colour_channels,
)
from projected_gan.augmentations.diffaugment import (
    DEFAULT_POLICY,
    DiffAugment,
    build_augment,
    diffaugment_ops,
    parse_policy,
)
from projected_gan.augmentations.diffusion import DIFFUSION_WHERE, DiffusionAugment
from projected_gan.augmentations.geometric import (
    Cutout,
    GeometricOp,
    Offset,
    SourceMap,
    Translation,
    cut_out,
    translate,
)
from projected_gan.augmentations.op_base import OP_TAG

__all__ = [
    "DEFAULT_POLICY",
    "DIFFUSION_WHERE",
    "OP_TAG",
    "AdaptiveAugment",
    "Brightness",
    "Color",
    "ColorOp",
    "Contrast",
    "Cutout",
    "DiffAugment",
    "DiffusionAugment",
    "GeometricOp",
    "Offset",
    "OverfittingController",
    "PixelAffine",
    "Saturation",
    "SourceMap",
    "Translation",
    "build_augment",
    "colour_channels",
    "cut_out",
    "diffaugment_ops",
    "inner_augment",
    "parse_policy",
    "translate",
]
