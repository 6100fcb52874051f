"""The official generators (FastGAN, FastGAN-lite, StyleGAN2; conditional too) under our names.

FastGAN (``pg_modules.networks_fastgan.Generator``, pickled by import path) maps onto
:class:`projected_gan.generators.fastgan.FastGANGenerator` / ``FastGANLiteGenerator``:

* ``synthesis.init.init.{0,1}`` -> ``init.conv`` / ``init.norm``; ``synthesis.feat_R`` ->
  ``up.R`` (the Sequential's conv / noise / BatchNorm slots, or the conditional block's ``conv``,
  ``conv1``/``conv2``, ``bn``/``bn1``/``bn2`` with ``stored_mean``/``stored_var``);
  ``synthesis.se_R.main.{1,3}`` -> ``sle.R.gate.{1,3}``; ``synthesis.to_big`` -> ``to_rgb``;
  ``synthesis.embed`` (1000 rows) -> ``embed`` (its first ``c_dim`` rows: the official code
  looks up ``argmax`` of a ``c_dim`` one-hot, so the other rows are never used).
* Spectral norm: ``weight_orig``/``weight_u``/``weight_v`` -> our parametrisation's
  ``original``/``_u``/``_v``; NoiseInjection ``weight`` ``(1,)`` -> ``strength`` ``()`` (the
  conditional big block shares one noise weight between its two convs: both get it).
* Ours only: ``noise_const`` (FastGAN noise is always random in the official code) and the
  conditional BatchNorm's ``num_batches_tracked`` (unused with a fixed momentum).

StyleGAN2 (``networks_stylegan2.Generator``, persistent records; the ``skip`` architecture
Projected GAN trains) maps onto :class:`projected_gan.generators.stylegan2.StyleGAN2Generator`:
``mapping.fcI`` -> ``mapping_network.layers.I``, ``mapping.w_avg``, ``synthesis.bR`` ->
``synthesis_network.blocks.K`` (``K = log2 R - 2``; ``noise_strength`` -> ``noise.strength``,
``noise_const`` ``(R, R)`` -> ``(1, 1, R, R)``); the label embedding, an equalised-lr linear
layer there, becomes our embedding table ``W.T * weight_gain + bias * bias_gain`` (the same
vector for every one-hot label). The fixed ``resample_filter`` buffers are checked to be the
``[1, 3, 3, 1]`` filter our blocks use and not carried.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import Tensor

from projected_gan.fitting import check_part_config
from projected_gan.generators.stylegan2 import fir_filter
from projected_gan.official.mapping import Mapped, attr, fit, rename, sn_leaf, state_shapes
from projected_gan.official.unpickle import (
    OfficialPickleError,
    Record,
    module_state_dict,
    submodule,
)
from projected_gan.registry import create

__all__ = ["map_generator"]

_FASTGAN = "pg_modules.networks_fastgan."
_BIG_SLOTS = {"1": "convs.0", "2": "noises.0", "3": "norms.0", "5": "convs.1", "6": "noises.1"}
_BIG_SLOTS["7"] = "norms.1"
_LITE_SLOTS = {"1": "convs.0", "2": "norms.0"}


def _slot(slot: str, leaf: str) -> str:
    if slot.startswith("convs"):
        return f"{slot}.{sn_leaf(leaf)}"
    if slot.startswith("noises"):
        return f"{slot}.strength" if leaf == "weight" else f"{slot}.?{leaf}"
    return f"{slot}.{leaf}"


def _fastgan_rules(slots: dict[str, str], c_dim: int) -> list[tuple[str, Any]]:
    conds = {"conv": "convs.0", "conv1": "convs.0", "conv2": "convs.1"}
    bns = {"bn": "norms.0", "bn1": "norms.0", "bn2": "norms.1"}
    stats = {"stored_mean": "norm.running_mean", "stored_var": "norm.running_var"}
    return [
        (r"synthesis\.init\.init\.0\.(\w+)", lambda m: f"init.conv.{sn_leaf(m[1])}"),
        (r"synthesis\.init\.init\.1\.(\w+)", lambda m: f"init.norm.{m[1]}"),
        (
            r"synthesis\.feat_(\d+)\.(\d)\.(\w+)",
            lambda m: f"up.{m[1]}.{_slot(slots.get(m[2], '?'), m[3])}",
        ),
        (
            r"synthesis\.feat_(\d+)\.(conv\d?)\.(\w+)",
            lambda m: f"up.{m[1]}.{conds[m[2]]}.{sn_leaf(m[3])}",
        ),
        (
            r"synthesis\.feat_(\d+)\.(bn\d?)\.(gain|bias)\.(\w+)",
            lambda m: f"up.{m[1]}.{bns[m[2]]}.{m[3]}.{sn_leaf(m[4])}",
        ),
        (
            r"synthesis\.feat_(\d+)\.(bn\d?)\.(stored_mean|stored_var)",
            lambda m: f"up.{m[1]}.{bns[m[2]]}.{stats[m[3]]}",
        ),
        # the conditional big block's one noise layer serves both convs
        (
            r"synthesis\.feat_(\d+)\.noise\.weight",
            lambda m: [f"up.{m[1]}.noises.{i}.strength" for i in (0, 1)],
        ),
        (
            r"synthesis\.se_(\d+)\.main\.([13])\.(\w+)",
            lambda m: f"sle.{m[1]}.gate.{m[2]}.{sn_leaf(m[3])}",
        ),
        (r"synthesis\.to_big\.(\w+)", lambda m: f"to_rgb.{sn_leaf(m[1])}"),
        (r"synthesis\.embed\.weight", lambda m: "embed.weight" if c_dim else None),
    ]


def _fastgan(G: Record, where: str) -> tuple[dict[str, Any], Mapped]:
    synthesis = submodule(G, "synthesis")
    conditional = synthesis.cls == _FASTGAN + "FastganSynthesisCond"
    if synthesis.cls not in (_FASTGAN + "FastganSynthesis", _FASTGAN + "FastganSynthesisCond"):
        raise OfficialPickleError(f"{where}: synthesis is {synthesis.cls}, not FastGAN's")
    block = submodule(synthesis, "feat_8")
    if conditional:
        lite = block.cls == "pg_modules.blocks.UpBlockSmallCond"
    else:
        count = len(block.state.get("_modules", {}))
        if count not in (4, 9):  # upsample-conv-BN-GLU, or twice conv-noise-BN-GLU
            raise OfficialPickleError(f"{where}: feat_8 has {count} layers, not FastGAN's 4 or 9")
        lite = count == 4
    official = module_state_dict(G)
    init = official.get("synthesis.init.init.0.weight_orig")
    if init is None or init.ndim != 4:
        raise OfficialPickleError(f"{where}: no FastGAN init layer (synthesis.init.init.0)")
    c_dim = attr(G, "c_dim", int, where)
    kwargs = {
        "img_resolution": attr(G, "img_resolution", int, where),
        "c_dim": c_dim,
        "img_channels": attr(G, "img_channels", int, where),
        "z_dim": int(init.shape[0]),
        "ngf": int(init.shape[1]) // 32,  # the 4x4 stage has 16 * ngf channels, doubled for GLU
    }
    name = "fastgan_lite" if lite else "fastgan"
    config = check_part_config(
        {"kind": "generators", "name": name, "kwargs": kwargs}, "generators", where,
        OfficialPickleError,
    )  # fmt: skip
    # The official synthesis always builds the 256 px stage and gate, used only from 256 px on.
    unused = {
        k: f"built by the official code but unused at {kwargs['img_resolution']} px"
        for k in official
        if (m := re.match(r"synthesis\.(feat|se)_(\d+)\.", k))
        and int(m[2]) > kwargs["img_resolution"]
    }
    used = {k: v for k, v in official.items() if k not in unused}
    slots = _LITE_SLOTS if lite else _BIG_SLOTS
    state, ignored = rename(used, _fastgan_rules(slots, c_dim), where)
    ignored.update(unused)
    for key, value in list(state.items()):
        if key.endswith(".strength"):
            state[key] = value.reshape(())
    if c_dim:
        state["embed.weight"] = state["embed.weight"][:c_dim]
    expected = state_shapes(lambda: create("generators", name, **kwargs))
    absent_ok = {
        r".*noise_const": "the official FastGAN draws its noise afresh on every call (no const)",
        r".*\.norm\.num_batches_tracked": "the official conditional BatchNorm keeps no count",
    }
    left = fit(state, expected, where, absent_ok)
    return config, Mapped(state=state, left_at_init=left, ignored=ignored)


def _check_filter(official: dict[str, Tensor], where: str) -> None:
    expected = fir_filter()
    for key, value in official.items():
        if key.endswith("resample_filter") and not (
            value.shape == expected.shape and torch.allclose(value.float(), expected)
        ):
            raise OfficialPickleError(f"{where}: {key} is not the [1, 3, 3, 1] filter")


def _stylegan2(G: Record, where: str) -> tuple[dict[str, Any], Mapped]:
    mapping, synthesis = submodule(G, "mapping"), submodule(G, "synthesis")
    init = G.state.get("_init_kwargs") or {}
    if not isinstance(init, dict):
        raise OfficialPickleError(f"{where}: _init_kwargs is not a dict")
    blocks = {int(k[1:]): b for k, b in synthesis.state.get("_modules", {}).items()}
    for res, block in blocks.items():
        arch = block.state.get("architecture")
        if arch != "skip":
            raise OfficialPickleError(
                f"{where}: synthesis block b{res} has architecture {arch!r}; only the 'skip' "
                "StyleGAN2 that Projected GAN trains is supported"
            )
    c_dim = attr(G, "c_dim", int, where)
    res = attr(G, "img_resolution", int, where)
    fc0 = submodule(mapping, "fc0")
    kwargs = {
        "img_resolution": res,
        "c_dim": c_dim,
        "img_channels": attr(G, "img_channels", int, where),
        "z_dim": attr(G, "z_dim", int, where),
        "w_dim": attr(G, "w_dim", int, where),
        "map_layers": attr(mapping, "num_layers", int, where),
        "map_lr_multiplier": float(attr(fc0, "bias_gain", (int, float), where)),
        "w_avg_beta": float(attr(mapping, "w_avg_beta", (int, float), where)),
        "channel_base": int(init.get("channel_base", 32768)),
        "channel_max": int(init.get("channel_max", 512)),
        "conv_clamp": None if init.get("conv_clamp") is None else float(init["conv_clamp"]),
    }
    config = check_part_config(
        {"kind": "generators", "name": "stylegan2", "kwargs": kwargs}, "generators", where,
        OfficialPickleError,
    )  # fmt: skip
    official = module_state_dict(G)
    _check_filter(official, where)

    def block(m: re.Match[str]) -> str:
        return f"synthesis_network.blocks.{int(math.log2(int(m[1]))) - 2}"

    rules = [
        (r"mapping\.fc(\d+)\.(weight|bias)", lambda m: f"mapping_network.layers.{m[1]}.{m[2]}"),
        (r"mapping\.w_avg", lambda m: "mapping_network.w_avg"),
        (r"mapping\.embed\.(weight|bias)", lambda m: None),  # folded into one table below
        (r"synthesis\.b(\d+)\.const", lambda m: f"{block(m)}.const"),
        (
            r"synthesis\.b(\d+)\.(conv\d)\.noise_strength",
            lambda m: f"{block(m)}.{m[2]}.noise.strength",
        ),
        (
            r"synthesis\.b(\d+)\.(conv\d)\.noise_const",
            lambda m: f"{block(m)}.{m[2]}.noise.noise_const",
        ),
        (
            r"synthesis\.b(\d+)\.(conv\d|torgb)\.(weight|bias)",
            lambda m: f"{block(m)}.{m[2]}.{m[3]}",
        ),
        (
            r"synthesis\.b(\d+)\.(conv\d|torgb)\.affine\.(weight|bias)",
            lambda m: f"{block(m)}.{m[2]}.affine.{m[3]}",
        ),
        (r"synthesis\.b(\d+)\.(conv\d\.)?resample_filter", lambda m: None),
    ]
    state, ignored = rename(official, rules, where)
    for key, value in list(state.items()):
        if key.endswith("noise.noise_const"):
            state[key] = value.reshape(1, 1, *value.shape[-2:])
    ignored = {k: v for k, v in ignored.items() if "embed" not in k}
    for key in ignored:
        ignored[key] = "a fixed [1, 3, 3, 1] filter, built into our blocks"
    if c_dim:
        embed = submodule(mapping, "embed")
        weight, bias = official.get("mapping.embed.weight"), official.get("mapping.embed.bias")
        if weight is None or bias is None or weight.shape != (kwargs["w_dim"], c_dim):
            raise OfficialPickleError(
                f"{where}: mapping.embed is not a ({kwargs['w_dim']}, {c_dim}) layer"
            )
        gain = float(attr(embed, "weight_gain", (int, float), where))
        bias_gain = float(attr(embed, "bias_gain", (int, float), where))
        # one-hot c: W c * gain + b * bias_gain is row c of this table
        state["mapping_network.embed.weight"] = weight.float().T * gain + bias.float() * bias_gain
    expected = state_shapes(lambda: create("generators", "stylegan2", **kwargs))
    left = fit(state, expected, where, {})
    return config, Mapped(state=state, left_at_init=left, ignored=ignored)


def map_generator(G: Any, where: str) -> tuple[dict[str, Any], Mapped]:
    """Our part config of the official generator ``G`` and its tensors under our names.

    Raises:
        OfficialPickleError: not a FastGAN / StyleGAN2 generator of the official code, or a
            tensor that does not fit our module (named).
    """
    if not isinstance(G, Record):
        raise OfficialPickleError(f"{where} is {type(G).__name__}, not a pickled network")
    if G.cls == _FASTGAN + "Generator":
        return _fastgan(G, where)
    if G.cls == "persistent:Generator":
        return _stylegan2(G, where)
    raise OfficialPickleError(f"{where} is {G.cls}, not an official FastGAN or StyleGAN2 generator")
