"""timm CNNs as feature networks: any model with ``features_only``, and EfficientNet-lite0..4.

Registers ``tf_efficientnet_lite0`` ... ``tf_efficientnet_lite4`` and the ``timm/<model>``
family. Nothing here imports timm at module import (see :mod:`.weights`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor

from projected_gan.projectors.feature_networks import FeatureNetwork
from projected_gan.projectors.weights import WEIGHT_PACKAGES, create_timm_model
from projected_gan.registry import FEATURE_NETWORKS

__all__ = ["TimmFeatureNetwork", "timm_features"]


class TimmFeatureNetwork(FeatureNetwork):
    """Any timm CNN that supports ``features_only``, frozen, with its own mean/std.

    Stages come from timm's ``feature_info`` (never from slicing module attributes by hand).

    Args:
        model_name: timm model name, e.g. ``"tf_efficientnet_lite0"``, ``"resnet50"``.
        pretrained: resolve pretrained weights (see :func:`create_timm_model`); False = random.
        weights: optional state dict file for the full timm classifier.
        out_indices: which feature levels to return; default the last 4.
        input_size, resize: the resize rule (see :class:`FeatureNetwork`).
        mean, std: override the model's own statistics from its ``pretrained_cfg``.
    """

    def __init__(
        self,
        model_name: str,
        *,
        pretrained: bool = True,
        weights: str | Path | None = None,
        out_indices: Sequence[int] = (-4, -3, -2, -1),
        input_size: int | None = 224,
        resize: str = "upsample_only",
        blur: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        body = create_timm_model(
            model_name,
            pretrained=pretrained,
            weights=weights,
            features_only=True,
            out_indices=tuple(out_indices),
        )
        cfg = getattr(body, "pretrained_cfg", None) or {}
        super().__init__(
            mean=mean if mean is not None else cfg.get("mean", (0.485, 0.456, 0.406)),
            std=std if std is not None else cfg.get("std", (0.229, 0.224, 0.225)),
            input_size=input_size,
            resize=resize,
            blur=blur,
        )
        self.model_name = model_name
        self.body = body
        self.channels = tuple(body.feature_info.channels())
        self.reductions = tuple(body.feature_info.reduction())
        self.freeze()

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))

    def extra_repr(self) -> str:
        return f"{self.model_name!r}, {super().extra_repr()}"


@FEATURE_NETWORKS.register("timm/", tags=("timm",))
def timm_features(
    model_name: str,
    pretrained: bool = True,
    weights: str | None = None,
    out_indices: Sequence[int] = (-4, -3, -2, -1),
    input_size: int | None = 224,
    resize: str = "upsample_only",
    blur: int = 0,
) -> TimmFeatureNetwork:
    """Any timm CNN with features_only (e.g. timm/resnet50): last 4 stages, its own mean/std."""
    return TimmFeatureNetwork(
        model_name,
        pretrained=pretrained,
        weights=weights,
        out_indices=out_indices,
        input_size=input_size,
        resize=resize,
        blur=blur,
    )


def _efficientnet_lite(variant: int) -> Callable[..., TimmFeatureNetwork]:
    name = f"tf_efficientnet_lite{variant}"

    def factory(
        pretrained: bool = True,
        weights: str | None = None,
        input_size: int | None = 224,
        resize: str = "upsample_only",
        blur: int = 0,
    ) -> TimmFeatureNetwork:
        return TimmFeatureNetwork(
            name,
            pretrained=pretrained,
            weights=weights,
            input_size=input_size,
            resize=resize,
            blur=blur,
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (
        f"EfficientNet-lite{variant} (timm {name}), 4 stages at strides 4-32, mean = std = 0.5"
        + ("; ImageNet weights ship offline." if name in WEIGHT_PACKAGES else ".")
    )
    return factory


for _variant in range(5):
    FEATURE_NETWORKS.add(
        f"tf_efficientnet_lite{_variant}",
        _efficientnet_lite(_variant),
        tags=("timm", "efficientnet"),
    )
