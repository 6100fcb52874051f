"""Differentiable augmentation of every discriminator input; importing this registers the ops.

DiffAugment (Zhao et al., 2020): each op draws its parameters per sample and applies them with
one pure tensor expression; consecutive colour ops and consecutive geometric ops are fused.
"""

from projected_gan.augmentations.diffaugment import (
    DEFAULT_POLICY,
    OP_TAG,
    Brightness,
    Color,
    ColorOp,
    Contrast,
    Cutout,
    DiffAugment,
    GeometricOp,
    Offset,
    PixelAffine,
    Saturation,
    SourceMap,
    Translation,
    cut_out,
    diffaugment_ops,
    parse_policy,
    translate,
)

__all__ = [
    "DEFAULT_POLICY",
    "OP_TAG",
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
    "cut_out",
    "diffaugment_ops",
    "parse_policy",
    "translate",
]
