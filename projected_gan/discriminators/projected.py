"""ProjectedDiscriminator: augment -> frozen projector(s) (F then P) -> trainable heads."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from projected_gan.augmentations.diffaugment import build_augment
from projected_gan.configs import composite_part, part_config, record_part_config, spec_form
from projected_gan.discriminators.channels import (
    EXTRA_SEED_OFFSET,
    RGB_VIEWS,
    ExtraView,
    extra_projection_head,
    learned_rgb_map,
    rgb_input,
)
from projected_gan.discriminators.san import SplitLogits
from projected_gan.errors import PartBuildError
from projected_gan.images import MAX_CHANNELS
from projected_gan.part_specs import PartSpec, build_part
from projected_gan.precision import fp32_region
from projected_gan.projectors import Projector
from projected_gan.projectors.feature_networks import check_feature_network
from projected_gan.sizes import Size, SizeLike, as_size

__all__ = ["ProjectedDiscriminator"]

_DEFAULT_FEATURE_NETWORK = "tf_efficientnet_lite0"
_DEFAULT_HEAD = "ccm_csm"


def _is_list(spec: Any) -> bool:
    """A list/tuple/ModuleList of part specs (a string, dict or other module is one spec)."""
    if isinstance(spec, nn.ModuleList):
        return True
    return isinstance(spec, Sequence) and not isinstance(spec, (str, Mapping, nn.Module))


def _per_network(spec: Any, count: int, argument: str) -> list[Any]:
    """One spec per feature network: a list of ``count`` specs, or one spec reused for each.

    A module instance cannot be reused: each network needs its own head/discriminator.
    """
    if _is_list(spec):
        specs = list(spec)
        if len(specs) != count:
            raise ValueError(
                f"{argument}: a list needs one entry per feature network ({count}), "
                f"got {len(specs)}"
            )
        return specs
    if isinstance(spec, nn.Module) and count > 1:
        raise ValueError(
            f"{argument}: one {type(spec).__name__} instance cannot serve {count} feature "
            f"networks; pass a registered name or dict (built once per network) or a list of "
            f"{count} modules"
        )
    return [spec] * count


@composite_part("projected_discriminator")
class ProjectedDiscriminator(nn.Module):
    """The Projected GAN discriminator: augment -> frozen projector(s) -> multi-scale heads.

    Each part accepts an ``nn.Module``, a registered name, or ``{"name": ..., **kwargs}``; the
    channels, reductions and image size of each part are wired from the previous one.

    Several feature networks (``feature_network`` a list, as StyleGAN-XL pairs DeiT with
    EfficientNet-lite0): each one gets its own projection head and its own discriminator, all
    see the same augmented image, and their logits are concatenated along the last dimension.
    With one network the attributes are ``projector``/``discriminator`` (a :class:`Projector` and
    a module); with several they are ``nn.ModuleList`` s in the same order.

    Images with ``img_channels`` other than 3 (grayscale, RGBA, RGB + depth, multi-spectral):
    the augmentation transforms all C channels at once (one geometric transform per sample for
    every channel), then the feature networks see the RGB view, fixed or learned (``rgb``). With
    ``extra_branch`` the channels beyond RGB (3..C-1) become a second 3-channel view (see
    :class:`~projected_gan.discriminators.channels.ExtraView`) that the first feature network
    sees too (the same module, not a copy), through its own projection head (the RGB head's
    kind, drawn from its seed + 100) and its own multi-scale heads (``discriminator``'s spec
    for the first network); diffusion noise on features, conditioning and SAN split logits
    apply to it as to the RGB view. Attributes ``rgb_map`` (learned view), ``extra_view``,
    ``extra_head``, ``extra_discriminator`` exist only when used, so a 3-channel D with the
    defaults has the module tree and state dict it always had.

    Args:
        feature_network: a feature network, or a list of them (registered names, dicts and
            your own modules can be mixed); by name it is created with ``pretrained=True``
            (when its factory takes that argument).
        projection_head: a projection head (``"none"``, ``"ccm"``, ``"ccm_csm"``); None = none.
            With several networks one name/dict is built for each, or give a list.
        discriminator: the trainable heads; by name built with ``channels``, ``reductions``
            and ``image_size`` (the ``(h, w)`` the feature network sees) from the projector, plus
            ``num_classes`` when > 0. Called as ``discriminator(features, labels) -> (B, N)``.
            With several networks one name/dict is built for each, or give a list.
        augment: applied to every input (reals and fakes, D and G steps): a DiffAugment policy
            string, a list of op names, a registered name or dict, a module, or None.
        num_classes: 0 = unconditional, else the heads condition on labels.
        img_resolution: size of the images: one side (square) or ``(H, W)``; sizes the heads
            (after the feature network's resize rule). Stored normalised: an int when square,
            else an ``(H, W)`` tuple; :attr:`img_size` is always ``(H, W)``.
        projector: a ready :class:`Projector` (or a list), instead of
            ``feature_network``/``projection_head``.
        projection_seed: seed of the random projection when the head is built here by name and
            its spec names no ``seed`` (the training pipeline passes ``train.seed``, as the
            official code's global seed does); None = the head's own default. With several
            feature networks, network ``i`` gets ``projection_seed + i``.
        fp32_features: run the augmentation, feature network(s) and projection in fp32 even
            under autocast (the input is cast to fp32 first), so only the heads follow the
            caller's autocast. The G step's gradient then crosses the frozen network in fp32. A
            plain attribute: the trainer sets it from ``train.precision``.
        img_channels: channels of the images, 1..16.
        rgb: ``"fixed"``: the feature networks see :func:`projected_gan.images.rgb_view`
            (C = 1, 2: the first channel replicated; C >= 4: channels 0-2); ``"learned"``: a
            trainable 1x1 conv C -> 3 (``rgb_map``, with bias, no normalisation) that starts as
            exactly that view and trains with the heads (in :meth:`trainable_parameters` and the
            state dict). A D step then back-propagates through the frozen network(s) to it.
        extra_branch: also judge channels 3..C-1 (needs ``img_channels >= 4``), see above.

    ``forward(images, labels=None, split=False)``: images ``(B, img_channels, H, W)`` in
    [-1, 1] -> logits ``(B, N)`` (N = 100 per network for 256 px with the defaults, 676 at 512,
    3364 at 1024; the extra branch's logits come last). The projectors run without autograd
    unless the images require grad (the G step) or the RGB view is learned, so a D step builds
    a graph for the heads only. ``split=True`` (SAN heads, see :attr:`splits_logits`):
    :class:`SplitLogits` ``(fun, dir)``, each ``(B, N)``, for a SAN discriminator step.
    An augmentation with ``feature_noise_stage`` (``"features"`` or ``"projected"``) and
    ``noise(maps)``, as Diffusion-GAN's ``diffusion``, also gets every feature network's maps
    before (or after) the projection head.
    """

    def __init__(
        self,
        feature_network: PartSpec | Sequence[PartSpec] = _DEFAULT_FEATURE_NETWORK,
        projection_head: PartSpec | Sequence[PartSpec] | None = _DEFAULT_HEAD,
        discriminator: PartSpec | Sequence[PartSpec] = "multiscale",
        augment: PartSpec | Sequence[str] | None = "color,translation,cutout",
        num_classes: int = 0,
        img_resolution: SizeLike = 256,
        projector: Projector | Sequence[Projector] | None = None,
        projection_seed: int | None = None,
        fp32_features: bool = False,
        img_channels: int = 3,
        rgb: str = "fixed",
        extra_branch: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        img_size = as_size(img_resolution, "img_resolution")
        if type(img_channels) is not int or not 1 <= img_channels <= MAX_CHANNELS:
            raise ValueError(
                f"img_channels must be an int in [1, {MAX_CHANNELS}], got {img_channels!r}"
            )
        if rgb not in RGB_VIEWS:
            raise ValueError(f"rgb must be one of {RGB_VIEWS}, got {rgb!r}")
        if not isinstance(extra_branch, bool):
            raise ValueError(f"extra_branch must be true or false, got {extra_branch!r}")
        if extra_branch and img_channels < 4:
            raise ValueError(
                f"extra_branch needs img_channels >= 4 (channels beyond RGB), got {img_channels}"
            )
        if projection_seed is not None and not isinstance(projection_seed, int):
            raise ValueError(f"projection_seed must be an int or None, got {projection_seed!r}")
        if projector is None:
            projectors = self._build_projectors(
                feature_network, projection_head, projection_seed, img_size
            )
        elif (
            feature_network != _DEFAULT_FEATURE_NETWORK
            or projection_head != _DEFAULT_HEAD
            or projection_seed is not None
        ):
            raise ValueError(
                "pass either projector= or feature_network=/projection_head=/projection_seed=, "
                "not both"
            )
        else:
            projectors = list(projector) if _is_list(projector) else [projector]
            for p in projectors:
                if not isinstance(p, Projector):
                    raise TypeError(f"projector must be a Projector, got {type(p).__name__}")
        if not projectors:
            raise ValueError("feature_network: the list is empty; give at least one network")
        self.augment = build_augment(augment)
        self.num_classes = num_classes
        self.img_resolution: int | Size = img_size[0] if img_size[0] == img_size[1] else img_size
        self.img_channels, self.rgb, self.extra_branch = img_channels, rgb, extra_branch
        self.fp32_features = bool(fp32_features)
        heads = []
        head_specs = _per_network(discriminator, len(projectors), "discriminator")
        for i, (proj, spec) in enumerate(zip(projectors, head_specs)):
            where = "discriminator" if len(projectors) == 1 else f"discriminator[{i}]"
            heads.append(build_part("discriminators", spec, where, wiring=self._wiring(proj)))
        self.projector: Projector | nn.ModuleList
        self.discriminator: nn.Module
        if len(projectors) == 1:  # the one-network layout (and state dict keys) of before
            self.projector, self.discriminator = projectors[0], heads[0]
        else:
            self.projector, self.discriminator = nn.ModuleList(projectors), nn.ModuleList(heads)
        # Registered only when used: a default D keeps the module tree and state dict of before.
        self.rgb_map: nn.Conv2d | None = None
        if rgb == "learned":
            self.rgb_map = learned_rgb_map(img_channels)
        self.extra_view: ExtraView | None = None
        self.extra_head: nn.Module | None = None
        self.extra_discriminator: nn.Module | None = None
        if extra_branch:
            self._build_extra_branch(head_specs[0])
        # A head opts in to split logits with a true `splits_logits` (SAN heads do).
        splits = [bool(getattr(d, "splits_logits", False)) for d in heads]
        if len(set(splits)) > 1:
            raise PartBuildError(
                "discriminator: the heads of the feature networks must all be SAN heads or none "
                f"(splits_logits per network: {splits})",
                field="discriminator",
            )
        self._record_parts()

    def _record_parts(self) -> None:
        """Record this discriminator's config: each sub-part in spec form (see ``part_config``);
        a list per argument when there are several feature networks.

        Nothing is recorded when a sub-part was not built through a registry.
        """

        def form(module: nn.Module | None, kind: str) -> Any:
            config = None if module is None else part_config(module)
            if module is not None and (config is None or config["kind"] != kind):
                raise LookupError  # built by hand: this discriminator cannot describe itself
            return None if config is None else spec_form(config)

        several = len(self.projectors) > 1
        try:
            nets = [form(p.feature_network, "feature_networks") for p in self.projectors]
            heads = [form(p.head, "projection_heads") for p in self.projectors]
            discs = [form(d, "discriminators") for d in self.discriminators]
            augment = form(self.augment, "augmentations")
        except LookupError:
            return
        kwargs: dict[str, Any] = {
            "feature_network": nets if several else nets[0],
            "projection_head": heads if several else heads[0],
            "discriminator": discs if several else discs[0],
            "augment": augment,
            "num_classes": self.num_classes,
            "img_resolution": self.img_resolution,
            "img_channels": self.img_channels,
            "rgb": self.rgb,
            "extra_branch": self.extra_branch,
        }
        record_part_config(self, "projected_discriminator", "ProjectedDiscriminator", kwargs)

    def _wiring(self, projector: Projector) -> dict[str, Any]:
        """What the heads of ``projector``'s maps are built with (the pipeline's arguments)."""
        return {
            "channels": projector.channels,
            "reductions": projector.reductions,
            "image_size": projector.seen_size(self.img_size),
            "num_classes": self.num_classes or None,  # unconditional heads need not take it
        }

    def _build_extra_branch(self, spec: PartSpec) -> None:
        """The extra channels' view, projection head and heads (see the class docstring)."""
        if isinstance(spec, nn.Module):
            raise ValueError(
                "extra_branch builds a second set of heads from discriminator=: give it as a "
                "registered name or dict, not a module instance"
            )
        seed = (self.projection_seed or 0) + EXTRA_SEED_OFFSET
        self.extra_view = ExtraView(self.img_channels - 3, seed=seed)
        first = self.projectors[0]
        self.extra_head = extra_projection_head(first.head, seed)
        self.extra_discriminator = build_part(
            "discriminators", spec, "discriminator", wiring=self._wiring(first)
        )

    @property
    def img_size(self) -> Size:
        """``(H, W)`` of the images this discriminator was built for."""
        return as_size(self.img_resolution)

    @staticmethod
    def _build_projectors(
        feature_network: PartSpec | Sequence[PartSpec],
        projection_head: PartSpec | Sequence[PartSpec] | None,
        seed: int | None,
        image_size: Size,
    ) -> list[Projector]:
        several = _is_list(feature_network)
        nets = list(feature_network) if several else [feature_network]
        head_specs = _per_network(projection_head, len(nets), "projection_head")
        projectors = []
        for i, (spec, head_spec) in enumerate(zip(nets, head_specs)):
            suffix = f"[{i}]" if several else ""
            net = build_part(
                "feature_networks",
                spec,
                f"feature_network{suffix}",
                defaults={"pretrained": True},
            )
            # One dry forward: a wrong `channels` fails here, naming the network, and not as a
            # conv shape error in the heads at the first training step.
            check_feature_network(net, f"feature_network{suffix}", image_size)
            head = build_part(
                "projection_heads",
                "none" if head_spec is None else head_spec,
                f"projection_head{suffix}",
                defaults=None if seed is None else {"seed": seed + i},
                wiring={"channels": net.channels, "reductions": net.reductions},
            )
            projectors.append(Projector(net, head))
        return projectors

    @property
    def projectors(self) -> list[Projector]:
        """The projectors, one per feature network, in order (a list also for one network)."""
        if isinstance(self.projector, nn.ModuleList):
            return list(self.projector)
        return [self.projector]

    @property
    def discriminators(self) -> list[nn.Module]:
        """The trainable heads, one per feature network, in the order of :attr:`projectors`."""
        if isinstance(self.discriminator, nn.ModuleList):
            return list(self.discriminator)
        return [self.discriminator]

    @property
    def splits_logits(self) -> bool:
        """Whether the heads are SAN heads, i.e. ``forward`` accepts ``split=True``."""
        return bool(getattr(self.discriminators[0], "splits_logits", False))

    @property
    def projection_seed(self) -> int | None:
        """Seed the (first) projection head was drawn from (None for heads without one)."""
        seed = getattr(self.projectors[0].head, "seed", None)
        return None if seed is None else int(seed)

    def _trained(self) -> list[nn.Module]:
        """The trained modules: the heads, then the learned RGB map and the extra branch's heads
        when there are any (this order, so a default D's parameter order is that of before)."""
        extra = (self.rgb_map, self.extra_discriminator)
        return [self.discriminator, *(m for m in extra if m is not None)]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Exactly the trained parameters: the heads of every network, then the learned RGB map
        and the extra branch's heads if any (projectors are frozen)."""
        return [p for module in self._trained() for p in module.parameters()]

    def requires_grad_(self, requires_grad: bool = True) -> ProjectedDiscriminator:
        """Toggle the trained modules only: the projectors stay frozen whatever the training
        loop asks."""
        for module in self._trained():
            module.requires_grad_(requires_grad)
        return self

    def _feature_noise(self) -> tuple[str | None, Callable[[list[Tensor]], list[Tensor]] | None]:
        """An augmentation's hook on feature maps (Diffusion-GAN's noise): where it goes
        (``augment.feature_noise_stage``: ``"features"``, ``"projected"`` or None) and a function
        applying ``augment.noise`` to each map of a list."""
        stage = getattr(self.augment, "feature_noise_stage", None)
        if stage is None:
            return None, None
        if stage not in ("features", "projected"):
            raise ValueError(
                f"augment.feature_noise_stage must be 'features', 'projected' or None, "
                f"got {stage!r}"
            )
        noise = self.augment.noise
        return stage, lambda maps: [noise(m) for m in maps]

    def forward(
        self, images: Tensor, labels: Tensor | None = None, split: bool = False
    ) -> Tensor | SplitLogits:
        """``images`` ``(B, img_channels, H, W)`` in [-1, 1] (+ labels) -> logits ``(B, N)``, or
        with ``split=True`` a :class:`SplitLogits` of two ``(B, N)`` (SAN heads only)."""
        if split and not self.splits_logits:
            raise ValueError(
                "split=True needs SAN heads (e.g. discriminator={name: multiscale, san: true})"
            )
        if images.ndim != 4 or images.shape[1] != self.img_channels:
            raise ValueError(
                f"images must be (B, {self.img_channels}, H, W) (img_channels="
                f"{self.img_channels}), got shape {tuple(images.shape)}"
            )
        # Gradient w.r.t. the image is needed only in the G step (images require grad); in the
        # D step the augmentation and frozen projectors run without autograd, unless the RGB
        # view is learned (its map trains through the feature networks).
        needs_input_grad = torch.is_grad_enabled() and images.requires_grad
        learned = self.rgb_map is not None and torch.is_grad_enabled()
        learned = learned and self.rgb_map.weight.requires_grad
        precision = contextlib.nullcontext()
        if self.fp32_features:
            precision = fp32_region(images.device.type)
            images = images.float()
        stage, noise = self._feature_noise()
        between = noise if stage == "features" else None
        with precision:
            with _autograd(needs_input_grad):
                # One augmentation of all C channels for all networks: they judge one image.
                x = images if self.augment is None else self.augment(images)
            with _autograd(needs_input_grad or learned):
                rgb = rgb_input(x, self.rgb_map)
                features = [projector(rgb, between=between) for projector in self.projectors]
            if self.extra_branch:
                with _autograd(needs_input_grad):
                    features.append(self._extra_features(x, between))
            if stage == "projected":
                features = [noise(f) for f in features]
        heads = self.discriminators
        if self.extra_discriminator is not None:
            heads.append(self.extra_discriminator)
        extra = {"split": True} if split else {}  # heads without SAN never see `split`
        logits = [d(f, labels, **extra) for d, f in zip(heads, features)]
        if split:  # fun and dir concatenated separately across networks
            return SplitLogits(*(torch.cat(parts, dim=-1) for parts in zip(*logits)))
        return logits[0] if len(logits) == 1 else torch.cat(logits, dim=-1)

    def _extra_features(
        self, x: Tensor, between: Callable[[list[Tensor]], list[Tensor]] | None
    ) -> list[Tensor]:
        """The extra channels' view through the first feature network and the extra head."""
        maps = self.projectors[0].feature_network(self.extra_view(x))
        if between is not None:
            maps = between(maps)
        return self.extra_head(maps)


def _autograd(enabled: bool) -> contextlib.AbstractContextManager:
    """Leave autograd as it is (``enabled``) or switch it off."""
    return contextlib.nullcontext() if enabled else torch.no_grad()
