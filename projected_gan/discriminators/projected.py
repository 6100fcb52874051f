"""ProjectedDiscriminator: augment -> frozen projector (F then P) -> trainable multi-scale heads."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from projected_gan.precision import fp32_region
from projected_gan.projectors import FeatureNetwork, Projector
from projected_gan.registry import AUGMENTATIONS, RegistryEntry, get_registry

__all__ = ["ProjectedDiscriminator"]

PartSpec = nn.Module | str | Mapping[str, Any]
_DEFAULT_FEATURE_NETWORK = "tf_efficientnet_lite0"
_DEFAULT_HEAD = "ccm_csm"
_OP_TAG = "diffaugment_op"  # augmentations a DiffAugment policy may name


def _build_part(
    kind: str,
    spec: PartSpec,
    argument: str,
    defaults: Mapping[str, Any] | None = None,
    wiring: Mapping[str, Any] | None = None,
) -> nn.Module:
    """An instance as is; a registered name, or ``{"name": ..., **kwargs}``, created.

    ``defaults`` go only to factories that accept them and may be overridden by the dict's
    kwargs; ``wiring`` (what the previous part exposes, e.g. channels) may not.
    """
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping):
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"{argument}: a dict needs a 'name' key (a registered name): {spec}")
    else:
        raise TypeError(
            f"{argument} must be an nn.Module, a registered name or a dict with 'name', "
            f"got {type(spec).__name__}"
        )
    clash = set(kwargs) & set(wiring or {})
    if clash:
        raise ValueError(
            f"{argument}: {sorted(clash)} are wired automatically from the projector; "
            "do not pass them"
        )
    registry = get_registry(kind)
    defaults = {k: v for k, v in (defaults or {}).items() if _accepts(registry.entry(name), k)}
    return registry.create(name, **{**defaults, **kwargs, **(wiring or {})})


def _accepts(entry: RegistryEntry, keyword: str) -> bool:
    """Whether the factory takes ``keyword`` (a plugin network may have no ``pretrained``)."""
    sig = entry.signature()
    if sig is None:
        return True
    params = sig.parameters.values()
    return keyword in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in params)


def _build_augment(augment: PartSpec | Sequence[str] | None) -> nn.Module | None:
    """None / "" -> no augmentation; a DiffAugment policy string or op list; a name; a module."""
    if augment is None or isinstance(augment, nn.Module):
        return augment
    if isinstance(augment, str):
        policy = augment.strip()
        if not policy:
            return None
        single = "," not in policy and policy in AUGMENTATIONS
        if single and _OP_TAG not in AUGMENTATIONS.entry(policy).tags:
            return AUGMENTATIONS.create(policy)  # a whole registered augmentation
        return AUGMENTATIONS.create("diffaugment", policy=policy)
    if isinstance(augment, Mapping):
        return _build_part("augmentations", augment, "augment")
    if isinstance(augment, Sequence) and all(isinstance(op, str) for op in augment):
        return AUGMENTATIONS.create("diffaugment", policy=list(augment)) if augment else None
    raise TypeError(
        "augment must be None, a DiffAugment policy like 'color,translation,cutout', a list of "
        f"op names, a registered name, a dict with 'name' or an nn.Module; got {augment!r}"
    )


class ProjectedDiscriminator(nn.Module):
    """The Projected GAN discriminator: augment -> frozen projector -> multi-scale heads.

    Each part accepts an ``nn.Module``, a registered name, or ``{"name": ..., **kwargs}``; the
    channels, reductions and image size of each part are wired from the previous one.

    Args:
        feature_network: a feature network; by name it is created with ``pretrained=True``
            (when its factory takes that argument).
        projection_head: a projection head (``"none"``, ``"ccm"``, ``"ccm_csm"``); None = none.
        discriminator: the trainable heads; by name built with ``channels``, ``reductions``
            and ``image_size`` (the side the feature network sees) from the projector, plus
            ``num_classes`` when > 0. Called as ``discriminator(features, labels) -> (B, N)``.
        augment: applied to every input (reals and fakes, D and G steps): a DiffAugment policy
            string, a list of op names, a registered name or dict, a module, or None.
        num_classes: 0 = unconditional, else the heads condition on labels.
        img_resolution: side of the images; sizes the heads (after the resize rule).
        projector: a ready :class:`Projector`, instead of ``feature_network``/``projection_head``.
        projection_seed: seed of the random projection when the head is built here by name and
            its spec names no ``seed`` (the training pipeline passes ``train.seed``, as the
            official code's global seed does); None = the head's own default.
        fp32_features: run the augmentation, feature network and projection in fp32 even under
            autocast (the input is cast to fp32 first), so only the heads follow the caller's
            autocast. The G step's gradient then crosses the frozen network in fp32. A plain
            attribute: the trainer sets it from ``train.precision``.

    ``forward(images, labels=None)``: images ``(B, 3, H, W)`` in [-1, 1] -> logits ``(B, N)``
    (N = 100 for 256 px with the defaults, 676 at 512, 3364 at 1024). The projector runs without
    autograd unless the images require grad (the G step), so a D step builds a graph for the
    heads only.
    """

    def __init__(
        self,
        feature_network: PartSpec = _DEFAULT_FEATURE_NETWORK,
        projection_head: PartSpec | None = _DEFAULT_HEAD,
        discriminator: PartSpec = "multiscale",
        augment: PartSpec | Sequence[str] | None = "color,translation,cutout",
        num_classes: int = 0,
        img_resolution: int = 256,
        projector: Projector | None = None,
        projection_seed: int | None = None,
        fp32_features: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        if not isinstance(img_resolution, int) or img_resolution < 1:
            raise ValueError(f"img_resolution must be a positive int, got {img_resolution!r}")
        if projection_seed is not None and not isinstance(projection_seed, int):
            raise ValueError(f"projection_seed must be an int or None, got {projection_seed!r}")
        if projector is None:
            projector = self._build_projector(feature_network, projection_head, projection_seed)
        elif (
            feature_network != _DEFAULT_FEATURE_NETWORK
            or projection_head != _DEFAULT_HEAD
            or projection_seed is not None
        ):
            raise ValueError(
                "pass either projector= or feature_network=/projection_head=/projection_seed=, "
                "not both"
            )
        elif not isinstance(projector, Projector):
            raise TypeError(f"projector must be a Projector, got {type(projector).__name__}")
        self.projector = projector
        self.augment = _build_augment(augment)
        self.num_classes = num_classes
        self.img_resolution = img_resolution
        self.fp32_features = bool(fp32_features)
        wiring: dict[str, Any] = {
            "channels": projector.channels,
            "reductions": projector.reductions,
            "image_size": projector.seen_size(img_resolution),
        }
        if num_classes:
            wiring["num_classes"] = num_classes
        self.discriminator = _build_part(
            "discriminators", discriminator, "discriminator", wiring=wiring
        )

    @staticmethod
    def _build_projector(
        feature_network: PartSpec, projection_head: PartSpec | None, seed: int | None
    ) -> Projector:
        net = _build_part(
            "feature_networks", feature_network, "feature_network", defaults={"pretrained": True}
        )
        if not isinstance(net, FeatureNetwork):
            raise TypeError(
                "feature_network must build a projected_gan.projectors.FeatureNetwork, got "
                f"{type(net).__name__}"
            )
        head = _build_part(
            "projection_heads",
            "none" if projection_head is None else projection_head,
            "projection_head",
            defaults=None if seed is None else {"seed": seed},
            wiring={"channels": net.channels, "reductions": net.reductions},
        )
        return Projector(net, head)

    @property
    def projection_seed(self) -> int | None:
        """Seed the projection head was drawn from (None for heads without one)."""
        seed = getattr(self.projector.head, "seed", None)
        return None if seed is None else int(seed)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Exactly the discriminator heads' parameters (the projector is frozen)."""
        return list(self.discriminator.parameters())

    def requires_grad_(self, requires_grad: bool = True) -> ProjectedDiscriminator:
        """Toggle the heads only: the projector stays frozen whatever the training loop asks."""
        self.discriminator.requires_grad_(requires_grad)
        return self

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """``images`` ``(B, 3, H, W)`` in [-1, 1] (+ labels) -> logits ``(B, N)``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        # Gradient w.r.t. the image is needed only in the G step (images require grad); in the
        # D step the augmentation and frozen projector run without autograd.
        needs_input_grad = torch.is_grad_enabled() and images.requires_grad
        grad_mode = contextlib.nullcontext() if needs_input_grad else torch.no_grad()
        precision = contextlib.nullcontext()
        if self.fp32_features:
            precision = fp32_region(images.device.type)
            images = images.float()
        with grad_mode, precision:
            x = images if self.augment is None else self.augment(images)
            features = self.projector(x)
        return self.discriminator(features, labels)
