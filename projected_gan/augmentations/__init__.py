"""Differentiable augmentation of every discriminator input; importing this registers the ops.

DiffAugment (Zhao et al., 2020): each op draws its parameters per sample and applies them with
one pure tensor expression; consecutive colour ops and consecutive geometric ops are fused.
Adaptive augmentation (StyleGAN2-ADA, Karras et al., 2020) applies any of them with a
probability tuned during training from D's outputs on reals.

adaptive.py      ``AdaptiveAugment``: per-sample probability p, moved by ADA's controller
diffaugment.py   the policy: parse it, group runs of one family, run them (``DiffAugment``);
                 ``build_augment``: an augmentation from a policy, a name or a dict
color.py         colour ops, folded into one per-sample affine pass
geometric.py     geometric ops, folded into one nearest-neighbour ``grid_sample``
op_base.py       what the ops share: the policy tag, input checks, per-sample random draws
"""

from projected_gan.augmentations.adaptive import AdaptiveAugment
from projected_gan.augmentations.color import (
    Brightness,
    Color,
    ColorOp,
    Contrast,
    PixelAffine,
    Saturation,
)
from projected_gan.augmentations.diffaugment import (
    DEFAULT_POLICY,
    DiffAugment,
    build_augment,
    diffaugment_ops,
    parse_policy,
)
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
    "OP_TAG",
    "AdaptiveAugment",
    "Brightness",
    "Color",
    "ColorOp",
    "Contrast",
    "Cutout",
    "DiffAugment",
    "GeometricOp",
    "Offset",
    "PixelAffine",
    "Saturation",
    "SourceMap",
    "Translation",
    "build_augment",
    "cut_out",
    "diffaugment_ops",
    "parse_policy",
    "translate",
]
