"""timm vision transformers (ViT, DeiT, Swin, ...) as feature networks.

A plain ViT keeps one token grid (stride 16 for patch 16) through its depth, while the heads
downstream expect a pyramid. Following the "reassemble" step of DPT (also used by StyleGAN-XL's
projected discriminator), four blocks are taken evenly through the depth and each block's token
grid, reshaped to a 2-D map, is brought to its own stride, 4, 8, 16 and 32, by fixed (not
learned) bilinear resampling, so the network stays frozen like the CNNs. Hierarchical models
such as Swin already give maps at those strides and pass through unchanged.

Registers the ``vit/<timm name>`` family. timm is imported only when a model is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor

from projected_gan.projectors.feature_networks import FeatureNetwork
from projected_gan.projectors.weights import create_timm_model
from projected_gan.registry import FEATURE_NETWORKS

__all__ = ["TransformerFeatureNetwork", "evenly_spaced_blocks", "vit_features"]

DEFAULT_STRIDES = (4, 8, 16, 32)


def evenly_spaced_blocks(depth: int, count: int) -> tuple[int, ...]:
    """``count`` block indices spread evenly over ``depth`` blocks, ending with the last one.

    ``evenly_spaced_blocks(12, 4) == (2, 5, 8, 11)`` (DPT's choice for ViT-B), and for a model
    with four stages ``(0, 1, 2, 3)``.
    """
    if not 1 <= count <= depth:
        raise ValueError(f"cannot take {count} blocks from a depth of {depth}")
    return tuple(round((k + 1) * depth / count) - 1 for k in range(count))


class TransformerFeatureNetwork(FeatureNetwork):
    """A frozen timm transformer read through ``forward_intermediates``, reassembled to strides.

    The image is always resized to ``input_size`` x ``input_size``, a non-square one stretched
    (the token grid of a ViT is fixed by it: ``keeps_aspect`` is False), put
    in the model's own mean/std, and run up to the last chosen block (later blocks and the
    classifier head are pruned). Each chosen block's tokens (class/distillation tokens dropped)
    form a ``(B, C, input_size / patch, input_size / patch)`` map, which is resampled to side
    ``ceil(input_size / stride)`` for its entry of ``strides``.

    Args:
        model_name: a timm model with ``forward_intermediates``, e.g. ``"deit_base_patch16_224"``,
            ``"vit_small_patch16_224"``, ``"swin_tiny_patch4_window7_224"`` (timm CNNs have it
            too and work, but ``timm/<name>`` keeps their own stages without resampling).
        pretrained: resolve pretrained weights (see :func:`create_timm_model`); False = random.
        weights: optional state dict file for the full timm classifier.
        blocks: indices into the model's ``feature_info`` (blocks of a ViT, stages of a Swin);
            default: ``len(strides)`` of them evenly through the depth.
        strides: the output stride of each chosen block, relative to the resized image.
        input_size: side the image is resized to; default the model's own (224 for most).
        mean, std: override the model's own statistics from its ``pretrained_cfg``.
    """

    def __init__(
        self,
        model_name: str,
        *,
        pretrained: bool = True,
        weights: str | Path | None = None,
        blocks: Sequence[int] | None = None,
        strides: Sequence[int] = DEFAULT_STRIDES,
        input_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        strides = tuple(strides)
        if not strides or any(not isinstance(s, int) or s < 1 for s in strides):
            raise ValueError(f"strides must be positive ints, got {strides}")  # before timm builds
        extra = {} if input_size is None else {"img_size": input_size}
        model = create_timm_model(model_name, pretrained=pretrained, weights=weights, **extra)
        if not hasattr(model, "forward_intermediates") or not hasattr(model, "feature_info"):
            raise TypeError(
                f"timm model {model_name!r} has no forward_intermediates()/feature_info; the vit/ "
                "family needs a timm transformer (ViT, DeiT, Swin, ...); use timm/<name> for CNNs"
            )
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if input_size is None:
            input_size = int(cfg.get("input_size", (3, 224, 224))[-1])
        info = list(model.feature_info)
        if blocks is None:
            blocks = evenly_spaced_blocks(len(info), len(strides))
        blocks = tuple(int(b) for b in blocks)
        if len(blocks) != len(strides):
            raise ValueError(
                f"blocks {blocks} and strides {strides} must have the same length (one stride "
                "per block)"
            )
        if any(not 0 <= b < len(info) for b in blocks) or list(blocks) != sorted(set(blocks)):
            raise ValueError(
                f"blocks must be increasing indices in [0, {len(info)}) of {model_name!r}'s "
                f"feature_info, got {blocks}"
            )
        # Drop what comes after the last chosen block (and the classifier): it would never run.
        model.prune_intermediate_layers(list(blocks), prune_norm=True, prune_head=True)
        super().__init__(
            mean=mean if mean is not None else cfg.get("mean", (0.485, 0.456, 0.406)),
            std=std if std is not None else cfg.get("std", (0.229, 0.224, 0.225)),
            input_size=input_size,
            resize="always",
        )
        self.keeps_aspect = False  # the token grid is fixed: every image is stretched to it
        self.model_name = model_name
        self.body = model
        self.blocks = blocks
        self.native_reductions = tuple(info[b]["reduction"] for b in blocks)
        self.channels = tuple(int(info[b]["num_chs"]) for b in blocks)
        self.reductions = strides
        self.freeze()

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """``x`` ``(B, 3, input_size, input_size)`` -> ``(B, channels[i], side_i, side_i)``."""
        maps = self.body.forward_intermediates(
            x, indices=list(self.blocks), intermediates_only=True, output_fmt="NCHW"
        )
        h, w = x.shape[-2:]
        out = []
        for m, stride in zip(maps, self.reductions):
            size = (math.ceil(h / stride), math.ceil(w / stride))
            if tuple(m.shape[-2:]) != size:
                shrink = size[0] < m.shape[-2]
                m = F.interpolate(
                    m, size=size, mode="bilinear", align_corners=False, antialias=shrink
                )
            out.append(m)
        return out

    def extra_repr(self) -> str:
        return f"{self.model_name!r}, blocks={self.blocks}, {super().extra_repr()}"


@FEATURE_NETWORKS.register("vit/", tags=("timm", "transformer"))
def vit_features(
    model_name: str,
    pretrained: bool = True,
    weights: str | None = None,
    blocks: Sequence[int] | None = None,
    strides: Sequence[int] = DEFAULT_STRIDES,
    input_size: int | None = None,
) -> TransformerFeatureNetwork:
    """Any timm ViT/DeiT/Swin (e.g. vit/deit_small_patch16_224): 4 blocks -> strides 4-32 maps.

    Tokens of each block become a 2-D map, resampled (fixed, bilinear) to its stride; the image
    is resized to the model's input size (224) in its own mean/std. Weights: ``weights=`` file,
    or timm's download/cache; ``pretrained=False`` for random weights.
    """
    return TransformerFeatureNetwork(
        model_name,
        pretrained=pretrained,
        weights=weights,
        blocks=blocks,
        strides=strides,
        input_size=input_size,
    )
