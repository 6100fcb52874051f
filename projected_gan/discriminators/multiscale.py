"""Multi-scale discriminator: one small convolutional discriminator per projected feature map.

Every scale down-samples until its map is at most 8 px, then a 4x4 conv without padding gives
its logit map; finer scales get more down blocks, so all scales end at the same logit size (5x5
for 256 px images on EfficientNet-lite + CSM, 4x4 below 224 px where the image is resized to 224)
and weigh the same in the loss. Every conv is spectrally normalised. A non-square map (h, w) is
laid out from its SHORT side exactly as a square one of that side, and its logit map is then
(h', w') (e.g. 4x7 per scale for a 64x96 image seen at 224x336).

Above 256 px the heads are laid out as in the official code: sized as if the feature network saw
a 256 px image (4/3/2/1 down blocks for lite0 + CSM, the same 10.33 M parameters as at 256), so
the logit maps grow with the image: 13x13 per scale at 512 px, 29x29 at 1024 px. The authors
report that this fixed layout gave their best results; for non-square images the short side
decides (above 256 px). ``size_heads_to_maps=True`` sizes every
head from its real map instead (more down blocks, always 5x5 logits).

``san=True`` turns the heads into SAN heads (Takida et al., ICLR 2024; see
:mod:`projected_gan.discriminators.san`): same logits, and ``forward(..., split=True)`` gives
the :class:`SplitLogits` a SAN discriminator step trains on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from projected_gan.discriminators.san import SANConv2d, SplitLogits, san_project
from projected_gan.errors import PartBuildError
from projected_gan.registry import DISCRIMINATORS
from projected_gan.sizes import Size, SizeLike, as_size
from projected_gan.spectral_norm import spectral_norm

__all__ = [
    "CHANNEL_TABLE",
    "OFFICIAL_LAYOUT_SIZE",
    "DownBlock",
    "MultiScaleDiscriminator",
    "ScaleDiscriminator",
    "SeparableDownBlock",
]

# feature-map side -> channels after a down block that reaches that side
CHANNEL_TABLE = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32, 512: 16, 1024: 8}
# The official code sizes the heads for the maps of a 256 px image whatever the real size.
OFFICIAL_LAYOUT_SIZE = 256
NORMS = ("batch", "group")


def _table_channels(size: int) -> int:
    """Channels for a map of side ``size``: the table entry of the nearest power of two."""
    key = 2 ** round(math.log2(max(size, 1)))
    return CHANNEL_TABLE[min(max(key, 4), 1024)]


def _sn_conv(cin: int, cout: int, kernel: int, **kwargs) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, kernel, **kwargs))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(math.gcd(32, channels), channels)


class DownBlock(nn.Sequential):
    """SN 4x4 stride-2 conv -> norm -> LeakyReLU(0.2).

    ``(B, cin, h, w)`` -> ``(B, cout, h // 2, w // 2)``.
    """

    def __init__(self, cin: int, cout: int, norm: str = "batch") -> None:
        super().__init__(
            _sn_conv(cin, cout, 4, stride=2, padding=1),
            _norm(norm, cout),
            nn.LeakyReLU(0.2, inplace=True),
        )


class SeparableDownBlock(nn.Sequential):
    """Depthwise SN 3x3 -> pointwise SN 1x1 -> norm -> LeakyReLU(0.2) -> 2x2 average pool."""

    def __init__(self, cin: int, cout: int, norm: str = "batch") -> None:
        super().__init__(
            _sn_conv(cin, cin, 3, padding=1, groups=cin, bias=False),
            _sn_conv(cin, cout, 1, bias=False),
            _norm(norm, cout),
            nn.LeakyReLU(0.2, inplace=True),
            nn.AvgPool2d(2),
        )


class ScaleDiscriminator(nn.Module):
    """Discriminator for one feature scale: down blocks while the side is above 8, then SN 4x4.

    Args:
        in_channels: channels of the feature map.
        size: side of a square feature map, or its ``(h, w)``; both at least 4.
        out_channels: 1 (logits) or ``cmap_dim`` (conditional projection).
        separable, norm: block type and normalisation.
        layout_size: side the layout is sized for (number of down blocks and their channels);
            default the map's short side. A smaller one gives fewer blocks and a larger logit
            map.
        san: the final 4x4 conv is a :class:`SANConv2d` (normalised per output channel, no
            spectral norm) instead of a spectrally normalised conv.

    The layout depends on the short side alone, so an ``(h, w)`` map gets exactly the modules of
    a square map of side ``min(h, w)``. ``forward(x, split=False)``: ``(B, in_channels, h, w)``
    -> ``(B, out_channels, h', w')`` with ``(h', w') = logit_size``, each side
    ``side // 2**num_down - 3``; ``split=True`` (``san`` only) gives a :class:`SplitLogits` of
    two such maps.

    Attributes:
        size: the map's ``(h, w)``; logit_size: the logit map's ``(h', w')``; num_down: blocks.
    """

    def __init__(
        self,
        in_channels: int,
        size: SizeLike,
        out_channels: int = 1,
        separable: bool = False,
        norm: str = "batch",
        layout_size: int | None = None,
        san: bool = False,
    ) -> None:
        super().__init__()
        # an int side below 1 is refused below, as too small, like any side under 4
        h, w = (size, size) if type(size) is int else as_size(size, "size")
        short = min(h, w)
        if short < 4:
            # The side comes from the image_size the pipeline wires in (the projector's view).
            raise PartBuildError(
                f"feature map side {short} (map {h}x{w}) is below 4, too small for the final 4x4 "
                "conv; use larger images or a feature network resize rule that upsamples them",
                field="image_size",
            )
        layout = short if layout_size is None else layout_size
        if not isinstance(layout, int) or not 4 <= layout <= short:
            raise ValueError(
                f"layout_size must be an int in [4, {short}] (the map's short side), "
                f"got {layout_size!r}"
            )
        block = SeparableDownBlock if separable else DownBlock
        layers: list[nn.Module] = []
        cin = in_channels
        self.size: Size = (h, w)
        while layout > 8:
            layout //= 2
            h, w = h // 2, w // 2  # both block types halve each side (floor)
            cout = _table_channels(layout)
            layers.append(block(cin, cout, norm))
            cin = cout
        self.san = bool(san)
        layers.append(
            SANConv2d(cin, out_channels, 4) if san else _sn_conv(cin, out_channels, 4, bias=False)
        )
        self.main = nn.Sequential(*layers)
        self.num_down = len(layers) - 1
        self.logit_size: Size = (h - 3, w - 3)

    @property
    def num_logits(self) -> int:
        """Logits per sample and output channel: ``h' * w'``."""
        return self.logit_size[0] * self.logit_size[1]

    def forward(self, x: Tensor, split: bool = False) -> Tensor | SplitLogits:
        if not split:
            return self.main(x)
        if not self.san:
            raise ValueError("split=True needs a SAN head (san=True)")
        *blocks, final = self.main
        for block in blocks:
            x = block(x)
        return final(x, split=True)


@DISCRIMINATORS.register("multiscale")
class MultiScaleDiscriminator(nn.Module):
    """One small discriminator per projected feature map; logits concatenated to ``(B, N)``.

    Args:
        channels: channels of each projected map (``projector.channels``).
        reductions: stride of each map relative to the image the projector sees.
        image_size: size of that image (after the feature network's resize rule), one side
            (square) or ``(h, w)``; each map's size is ``ceil(side / reduction)`` per axis.
        separable: depthwise-separable blocks with average pooling (paired with StyleGAN2).
        norm: ``"batch"`` (official) or ``"group"``.
        num_classes: 0 = unconditional; > 0 = projection discriminator: each scale's final conv
            gives ``cmap_dim`` channels, dotted with an embedding of the class (Embedding ->
            Linear -> LeakyReLU) and scaled by ``1 / sqrt(cmap_dim)``.
        cmap_dim: length of the conditional projection's class map (the final convs' channels).
        embed_dim: size of the class embedding before its Linear layer.
        sizes: the maps' sizes, when known exactly (overrides the ceil rule): per map one side
            (square) or ``(h, w)``.
        size_heads_to_maps: False (default, the official layout): when ``image_size``'s short
            side exceeds 256, every head is laid out for the maps of a 256 px image (same blocks
            and parameters as at 256; larger logit maps, e.g. 13x13 per scale at 512 px). True:
            every head is sized from its real map's short side (more blocks, always 5 logits
            along the short side). Identical at 256 px and below.
        san: SAN heads (Slicing Adversarial Network, Takida et al., ICLR 2024, as in their
            StyleSAN-XL): the last layer's weight acts as a unit direction times a scale, and
            ``forward(..., split=True)`` returns ``SplitLogits(fun, dir)`` (equal values): the
            base loss trains features and scale on ``fun``, a linear loss the direction on
            ``dir``. Unconditional: each final 4x4 conv is normalised per output channel (no
            spectral norm). Conditional: the final conv stays as is and the class map (output
            of Embedding -> Linear -> LeakyReLU) is normalised to unit length as the direction.
            Same logits shape as without.

    Attributes:
        sizes: the maps' real ``(h, w)``; ``layout_sizes``: the (short) sides the heads are laid
        out for; ``logit_sizes``: each head's logit map ``(h', w')``.
    """

    def __init__(
        self,
        channels: Sequence[int],
        reductions: Sequence[float],
        image_size: SizeLike,
        separable: bool = False,
        norm: str = "batch",
        num_classes: int = 0,
        cmap_dim: int = 64,
        embed_dim: int = 128,
        sizes: Sequence[SizeLike] | None = None,
        size_heads_to_maps: bool = False,
        san: bool = False,
    ) -> None:
        super().__init__()
        channels, reductions = tuple(channels), tuple(reductions)
        if not channels or len(channels) != len(reductions):
            raise ValueError(
                "channels and reductions must be non-empty and the same length, got "
                f"channels={channels}, reductions={reductions}"
            )
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        img_h, img_w = as_size(image_size, "image_size")
        if sizes is None:
            sizes = [(math.ceil(img_h / r), math.ceil(img_w / r)) for r in reductions]
        elif len(sizes) != len(channels):
            raise ValueError(f"sizes needs one entry per map ({len(channels)}), got {sizes}")
        self.channels, self.reductions = channels, reductions
        self.sizes: tuple[Size, ...] = tuple(as_size(s, "sizes") for s in sizes)
        self.size_heads_to_maps = bool(size_heads_to_maps)
        self.layout_sizes: tuple[int, ...] = tuple(min(s) for s in self.sizes)
        if not size_heads_to_maps and min(img_h, img_w) > OFFICIAL_LAYOUT_SIZE:
            # each map's side for a 256 px image (at least 4 for the final conv, at most real)
            self.layout_sizes = tuple(
                min(s, max(4, math.ceil(OFFICIAL_LAYOUT_SIZE / r)))
                for s, r in zip(self.layout_sizes, reductions)
            )
        self.num_classes, self.cmap_dim = num_classes, cmap_dim
        self.san = bool(san)
        out = cmap_dim if num_classes else 1
        # conditional SAN: the class map is the direction, the final conv stays spectral-normed
        san_conv = self.san and not num_classes
        self.discs = nn.ModuleList(
            ScaleDiscriminator(
                c, s, out, separable=separable, norm=norm, layout_size=layout, san=san_conv
            )
            for c, s, layout in zip(channels, self.sizes, self.layout_sizes)
        )
        if num_classes:
            self.embeds = nn.ModuleList(
                nn.Sequential(
                    nn.Embedding(num_classes, embed_dim),
                    nn.Linear(embed_dim, cmap_dim),
                    nn.LeakyReLU(0.2),
                )
                for _ in channels
            )

    @property
    def splits_logits(self) -> bool:
        """Whether ``forward`` accepts ``split=True`` (SAN heads)."""
        return self.san

    @property
    def logit_sizes(self) -> tuple[Size, ...]:
        """Each head's logit map ``(h', w')``, in the order of the maps."""
        return tuple(d.logit_size for d in self.discs)

    @property
    def num_logits(self) -> int:
        """N, the number of logits per sample: ``sum(h' * w')`` over the heads."""
        return sum(d.num_logits for d in self.discs)

    def _class_index(self, labels: Tensor | None, batch: int) -> Tensor:
        if labels is None:
            raise ValueError(f"num_classes={self.num_classes}: labels are required")
        if labels.ndim == 2 and labels.shape[1] == self.num_classes:
            labels = labels.argmax(dim=1)  # one-hot (or scores)
        elif labels.ndim != 1 or labels.is_floating_point():
            raise ValueError(
                f"labels must be int class indices (B,) or one-hot (B, {self.num_classes}), got "
                f"{labels.dtype} {tuple(labels.shape)}"
            )
        if labels.shape[0] != batch:
            raise ValueError(f"labels hold {labels.shape[0]} samples, the features {batch}")
        return labels

    def forward(
        self, features: Sequence[Tensor], labels: Tensor | None = None, split: bool = False
    ) -> Tensor | SplitLogits:
        """List of ``(B, channels[i], *sizes[i])`` (+ labels) -> logits ``(B, N)``, each head's
        ``(h', w')`` logit map flattened row-major, heads in order.

        ``split=True`` (``san`` only): :class:`SplitLogits` ``(fun, dir)``, each ``(B, N)``.
        """
        if split and not self.san:
            raise ValueError("split=True needs SAN heads: build the discriminator with san=True")
        if len(features) != len(self.discs):
            raise ValueError(f"expected {len(self.discs)} feature maps, got {len(features)}")
        batch = features[0].shape[0]
        if self.num_classes:
            index = self._class_index(labels, batch)
        elif labels is not None and labels.numel() > 0:
            raise ValueError("labels were given but num_classes=0 (unconditional)")
        scale = self.cmap_dim**-0.5
        logits: list[Tensor | SplitLogits] = []
        for i, (disc, x) in enumerate(zip(self.discs, features)):
            if not self.num_classes:
                logits.append(disc(x, split=True) if split else disc(x))
                continue
            h = disc(x)
            cmap = self.embeds[i](index)
            if self.san:
                logits.append(san_project(h, cmap, split=split, scale=scale))
            else:
                logits.append(torch.einsum("bchw,bc->bhw", h, cmap.to(h.dtype)) * scale)
        if split:  # concatenate fun and dir separately
            return SplitLogits(
                *(torch.cat([m.flatten(1) for m in maps], 1) for maps in zip(*logits))
            )
        return torch.cat([m.flatten(1) for m in logits], dim=1)

    def extra_repr(self) -> str:
        return (
            f"sizes={self.sizes}, layout_sizes={self.layout_sizes}, num_logits={self.num_logits}, "
            f"num_classes={self.num_classes}, san={self.san}"
        )
