"""The official projected discriminator under our names: its random projection and its heads.

``pg_modules.discriminator.ProjectedDiscriminator`` holds ``feature_network`` (``F_RandomProj``:
the timm EfficientNet-lite0 trunk ``pretrained.layer0-3`` and the random CCM/CSM ``scratch``)
and ``discriminator`` (``MultiScaleD``: one ``SingleDisc``/``SingleDiscCond`` per scale).

* ``feature_network.scratch.layerI_ccm`` -> ``projector.head.ccm.I``;
  ``feature_network.scratch.layerI_csm.out_conv`` -> ``projector.head.csm.I``.
* ``discriminator.mini_discs.I.main.J.main.{0,1}`` (DownBlock: SN conv, BatchNorm) ->
  ``discriminator.discs.I.main.J.{0,1}``; separable blocks ``main.0.depthwise``,
  ``main.0.pointwise``, ``main.1`` -> ``J.0``, ``J.1``, ``J.2``; the final SN conv
  (``main.N`` or, conditional, ``cls``) -> ``discs.I.main.N``.
* Conditional: ``embed`` (1000 rows, looked up by ``argmax`` of a ``c_dim`` one-hot) ->
  ``discriminator.embeds.I.0`` (first ``num_classes`` rows); ``embed_proj.0`` -> ``embeds.I.1``.
* The trunk (``feature_network.pretrained``) is never carried over: this library's
  ``tf_efficientnet_lite0`` uses its own shipped ImageNet weights. Its tensors are checked to
  have lite0's shapes, in timm's order, and compared with the shipped weights (reported).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from projected_gan.official.mapping import Mapped, attr, fit, rename, sn_leaf, state_shapes
from projected_gan.official.unpickle import (
    OfficialPickleError,
    Record,
    module_state_dict,
    submodule,
)
from projected_gan.registry import create

__all__ = ["LITE0_CHANNELS", "LITE0_REDUCTIONS", "map_discriminator"]

LITE0 = "tf_efficientnet_lite0"
LITE0_CHANNELS = (24, 40, 112, 320)  # channels and strides of the four tapped stages
LITE0_REDUCTIONS = (4, 8, 16, 32)
_HEADS = {0: "none", 1: "ccm", 2: "ccm_csm"}
_DISCS = ("pg_modules.discriminator.SingleDisc", "pg_modules.discriminator.SingleDiscCond")
_CLASSIFIER = ("conv_head.", "bn2.", "classifier.")  # timm's lite0 beyond the tapped trunk


@functools.lru_cache(maxsize=1)
def _lite0_reference() -> tuple[dict[str, Tensor], bool]:
    """timm's lite0 state dict with the shipped ImageNet weights (True), or random (False) when
    no weights are installed."""
    from projected_gan.projectors.weights import PretrainedWeightsError, create_timm_model

    try:
        return create_timm_model(LITE0, pretrained=True).state_dict(), True
    except PretrainedWeightsError:  # no weight package: shapes only
        return create_timm_model(LITE0, pretrained=False).state_dict(), False


def _trunk_report(trunk: dict[str, Tensor], where: str) -> dict[str, Any]:
    """Check the pickled trunk against lite0 in timm's order; compare with the shipped weights."""
    reference, shipped = _lite0_reference()
    names = [k for k in reference if not k.startswith(_CLASSIFIER)]
    ours = list(trunk.values())
    if len(ours) != len(names) or any(t.shape != reference[n].shape for t, n in zip(ours, names)):
        raise OfficialPickleError(
            f"{where}: the feature network holds {len(ours)} tensors that do not have "
            f"EfficientNet-lite0's {len(names)} shapes in timm's order; only the official lite0 "
            "projector is supported"
        )
    report: dict[str, Any] = {"name": LITE0, "tensors": len(ours)}
    if shipped:
        diff = max(
            float((t.float() - reference[n].float()).abs().max()) if t.numel() else 0.0
            for t, n in zip(ours, names)
        )
        report["max_abs_diff_to_shipped_imagenet_weights"] = diff
        report["equal_to_shipped_imagenet_weights"] = diff == 0.0
    return report


def _rules(separable: bool, final: dict[str, int], num_classes: int) -> list[tuple[str, Any]]:
    down = {"0.depthwise": "0", "0.pointwise": "1", "1": "2"} if separable else {"0": "0", "1": "1"}
    prefix = r"discriminator\.mini_discs\.(\d)"

    def block(m: Any) -> str:
        slot = down.get(m[3], f"?{m[3]}")  # an unknown slot fails the fit, named
        leaf = m[4] if m[3] == "1" else sn_leaf(m[4])  # slot 1 is the BatchNorm
        return f"discriminator.discs.{m[1]}.main.{m[2]}.{slot}.{leaf}"

    return [
        (r"feature_network\.pretrained\..*", lambda m: None),
        (
            r"feature_network\.scratch\.layer(\d)_ccm\.(weight|bias)",
            lambda m: f"projector.head.ccm.{m[1]}.{m[2]}",
        ),
        (
            r"feature_network\.scratch\.layer(\d)_csm\.out_conv\.(weight|bias)",
            lambda m: f"projector.head.csm.{m[1]}.{m[2]}",
        ),
        (prefix + r"\.main\.(\d+)\.main\.(0\.depthwise|0\.pointwise|\d)\.(\w+)", block),
        (
            prefix + r"\.main\.(\d+)\.(\w+)",
            lambda m: f"discriminator.discs.{m[1]}.main.{m[2]}.{sn_leaf(m[3])}",
        ),
        (
            prefix + r"\.cls\.(\w+)",
            lambda m: f"discriminator.discs.{m[1]}.main.{final[m[1]]}.{sn_leaf(m[2])}",
        ),
        (prefix + r"\.embed\.weight", lambda m: f"discriminator.embeds.{m[1]}.0.weight"),
        (
            prefix + r"\.embed_proj\.0\.(weight|bias)",
            lambda m: f"discriminator.embeds.{m[1]}.1.{m[2]}",
        ),
    ]


def map_discriminator(
    D: Any, img_resolution: int, num_classes: int, where: str
) -> tuple[dict[str, Any], Mapped, dict[str, Any]]:
    """Our ProjectedDiscriminator config, the projection head's and heads' tensors under our
    names (``projector.head.*``, ``discriminator.*``), and a report on the feature network.

    Args:
        img_resolution, num_classes: of the generator (the official D does not store them).
    """
    if not isinstance(D, Record) or D.cls != "pg_modules.discriminator.ProjectedDiscriminator":
        found = D.cls if isinstance(D, Record) else type(D).__name__
        raise OfficialPickleError(f"{where} is {found}, not the official ProjectedDiscriminator")
    projector, multi = submodule(D, "feature_network"), submodule(D, "discriminator")
    proj_type = attr(projector, "proj_type", int, where)
    if proj_type not in _HEADS:
        raise OfficialPickleError(f"{where}: proj_type {proj_type} is not 0, 1 or 2")
    discs = dict(submodule(multi, "mini_discs").state.get("_modules", {}))
    if sorted(discs) != ["0", "1", "2", "3"] or any(d.cls not in _DISCS for d in discs.values()):
        raise OfficialPickleError(f"{where}: expected 4 SingleDisc heads, found {sorted(discs)}")
    conditional = {d.cls for d in discs.values()} == {_DISCS[1]}
    if conditional != (num_classes > 0):
        raise OfficialPickleError(
            f"{where}: the heads are {'' if conditional else 'un'}conditional but the generator "
            f"has {num_classes} classes"
        )
    first = submodule(discs["0"], "main.0.main.0")
    separable = first.cls == "pg_modules.blocks.SeparableConv2d"
    final = {i: len(submodule(d, "main").state.get("_modules", {})) for i, d in discs.items()}
    if not conditional:
        final = {i: n - 1 for i, n in final.items()}  # the last layer of main is the final conv
    official = module_state_dict(D)
    trunk = {k: v for k, v in official.items() if k.startswith("feature_network.pretrained.")}
    feature_report = _trunk_report(trunk, where)

    interp224 = bool(D.state.get("interp224"))
    resize = {  # the official flag as our resize rule
        (True, True): "upsample_only",
        (True, False): "always",
        (False, True): "never",
        (False, False): "upsample_only",
    }[(interp224, img_resolution < 224)]
    head: dict[str, Any] = {"name": _HEADS[proj_type]}
    if proj_type:
        head.update(
            cout=attr(projector, "cout", int, where), expand=bool(projector.state.get("expand"))
        )
    kwargs = {
        "feature_network": {"name": LITE0, "resize": resize},
        "projection_head": head,
        "discriminator": {"name": "multiscale", "separable": separable, "norm": "batch"},
        "augment": "color,translation,cutout" if D.state.get("diffaug", True) else None,
        "num_classes": num_classes,
        "img_resolution": img_resolution,
    }
    config = {"kind": "projected_discriminator", "name": "ProjectedDiscriminator", "kwargs": kwargs}

    state, ignored = rename(official, _rules(separable, final, num_classes), where)
    for key in ignored:
        ignored[key] = f"the {LITE0} trunk: this library uses its own ImageNet weights"
    for key in [k for k in state if k.endswith(".0.weight") and ".embeds." in k]:
        state[key] = state[key][:num_classes]  # rows past num_classes are never looked up
    seen = img_resolution
    if resize == "always" or (resize == "upsample_only" and img_resolution < 224):
        seen = 224

    def build_heads() -> torch.nn.Module:
        options = {k: v for k, v in head.items() if k != "name"}
        p = create(
            "projection_heads",
            head["name"],
            channels=LITE0_CHANNELS,
            reductions=LITE0_REDUCTIONS,
            **options,
        )
        d = create(
            "discriminators",
            "multiscale",
            channels=p.channels,
            reductions=p.reductions,
            image_size=seen,
            separable=separable,
            num_classes=num_classes,
        )
        return torch.nn.ModuleDict({"head": p, "discriminator": d})

    expected = {
        (k.replace("head.", "projector.head.", 1) if k.startswith("head.") else k): v
        for k, v in state_shapes(build_heads).items()
    }
    left = fit(state, expected, where, {})
    return config, Mapped(state=state, left_at_init=left, ignored=ignored), feature_report
