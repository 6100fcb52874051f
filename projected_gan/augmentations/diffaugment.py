"""DiffAugment (Zhao et al., 2020): differentiable random augmentation of every D input.

Each op draws its own parameters for every sample, runs on the whole batch at once (no loop over
samples) and is differentiable with respect to the images. Projected GAN uses the policy
``"color,translation,cutout"`` on reals and fakes alike.

This module reads a policy and runs it. The ops are in :mod:`~projected_gan.augmentations.color`
and :mod:`~projected_gan.augmentations.geometric`; consecutive ops of one family are fused, so
a policy touches the batch as few times as possible: a run of colour ops is one
``gain * x + offset`` pass, a run of geometric ops one nearest-neighbour ``grid_sample``. The
default policy therefore costs a channel-mean reduction plus two passes over the batch.
kornia is not used: its colour jitter and translations follow other formulas (interpolating
warps), while each op here is one fused tensor expression.

New ops: subclass :class:`ColorOp` or :class:`GeometricOp` (to be fused) or write any module
called as ``op(x, generator=None)``, and register it in ``AUGMENTATIONS`` with
``tags=("diffaugment_op",)`` so policies can name it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from projected_gan.augmentations.color import ColorOp, recolor
from projected_gan.augmentations.geometric import GeometricOp, warp
from projected_gan.augmentations.op_base import OP_TAG, check_images
from projected_gan.errors import PartBuildError
from projected_gan.part_specs import PartSpec, build_part, under_argument
from projected_gan.registry import AUGMENTATIONS

__all__ = ["DEFAULT_POLICY", "DiffAugment", "build_augment", "diffaugment_ops", "parse_policy"]

DEFAULT_POLICY = "color,translation,cutout"


def diffaugment_ops() -> list[str]:
    """Names a policy may use (augmentations registered with the ``diffaugment_op`` tag)."""
    return AUGMENTATIONS.names(tags=(OP_TAG,))


def parse_policy(policy: str | Sequence[str | nn.Module]) -> list[nn.Module]:
    """Ops for ``policy``: a comma string (``"color,translation"``) or a list of names/modules."""
    if isinstance(policy, str):
        items: list[Any] = [p.strip() for p in policy.split(",") if p.strip()]
    elif isinstance(policy, Sequence):
        items = list(policy)
    else:
        raise TypeError(
            f"policy must be a comma-separated string or a list of op names, got {policy!r}"
        )
    valid = diffaugment_ops()
    ops: list[nn.Module] = []
    for item in items:
        if isinstance(item, nn.Module):
            ops.append(item)
        elif isinstance(item, str) and item.strip().lower() in valid:
            ops.append(AUGMENTATIONS.create(item.strip().lower()))
        else:
            raise PartBuildError(
                f"unknown DiffAugment op {item!r} in policy {policy!r}; valid ops: "
                f"{', '.join(valid)}",
                field="policy",
            )
    return ops


def _family(op: nn.Module) -> type:
    if isinstance(op, ColorOp):
        return ColorOp
    if isinstance(op, GeometricOp):
        return GeometricOp
    return nn.Module


@AUGMENTATIONS.register("diffaugment")
class DiffAugment(nn.Module):
    """DiffAugment: the policy's ops in order, each sample drawing its own parameters.

    Args:
        policy: comma-separated op names or a list of names / op modules; ``""`` is the
            identity. Valid names: :func:`diffaugment_ops` (``color``, ``brightness``,
            ``saturation``, ``contrast``, ``translation``, ``cutout``, ``offset``, ...).

    Call as ``aug(x, generator=None)`` with ``x`` ``(B, C, H, W)`` float images (any C and
    H x W, any float dtype, channels_last allowed), usually in [-1, 1]; colour ops change the
    colour channels only (see :func:`~projected_gan.augmentations.color.colour_channels`),
    geometric ops move all channels alike; the output has the same shape, dtype and memory
    format and is differentiable with respect to ``x``. A ``torch.Generator`` makes the draws
    reproducible (numbers are drawn on its device; one on ``x``'s device avoids host copies).
    """

    def __init__(self, policy: str | Sequence[str | nn.Module] = DEFAULT_POLICY) -> None:
        super().__init__()
        self.ops = nn.ModuleList(parse_policy(policy))
        # Runs of same-family ops, grouped once here: forward stays free of graph breaks.
        self._runs = [
            (family, list(group)) for family, group in itertools.groupby(self.ops, key=_family)
        ]

    @property
    def policy(self) -> str:
        return ",".join(_op_name(op) for op in self.ops)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``x`` ``(B, C, H, W)``; one fused pass per run of colour / geometric ops."""
        check_images(x)
        for family, run in self._runs:
            if family is ColorOp:
                x = recolor(x, run, generator)
            elif family is GeometricOp:
                x = warp(x, run, generator)
            else:
                for op in run:
                    x = op(x, generator=generator)
        return x

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"


def _op_name(op: nn.Module) -> str:
    for name in diffaugment_ops():
        if type(op) is AUGMENTATIONS.get(name):
            return name
    return type(op).__name__


def build_augment(
    augment: PartSpec | Sequence[str] | None, argument: str = "augment"
) -> nn.Module | None:
    """The augmentation ``augment`` names; None / ``""`` -> None (no augmentation).

    A comma string or a list of op names is a DiffAugment policy; a single name that is not an
    op (``"adaptive"``) or ``{"name": ..., **kwargs}`` is that registered augmentation; a module
    is used as is. A :class:`PartBuildError` names its field under ``argument``.
    """
    if augment is None or isinstance(augment, nn.Module):
        return augment
    with under_argument(argument):
        if isinstance(augment, str):
            policy = augment.strip()
            if not policy:
                return None
            single = "," not in policy and policy in AUGMENTATIONS
            if single and OP_TAG not in AUGMENTATIONS.entry(policy).tags:
                return AUGMENTATIONS.create(policy)  # a whole registered augmentation
            return AUGMENTATIONS.create("diffaugment", policy=policy)
        if isinstance(augment, Mapping):
            return build_part("augmentations", augment, argument)
        if isinstance(augment, Sequence) and all(isinstance(op, str) for op in augment):
            return AUGMENTATIONS.create("diffaugment", policy=list(augment)) if augment else None
    raise TypeError(
        f"{argument} must be None, a DiffAugment policy like 'color,translation,cutout', a list "
        f"of op names, a registered name, a dict with 'name' or an nn.Module; got {augment!r}"
    )
