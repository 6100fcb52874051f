"""Renaming official tensors to this library's names, and checking the result against our module.

Each network's mapping turns the official state dict into ``{our name: tensor}``; :func:`fit`
then compares it with the state dict of our module built (on the ``meta`` device, no memory) from
the derived config: every tensor must land on a name of ours with the same shape, and every name
of ours must be filled, except the few the official networks do not have (listed, with why).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from projected_gan.errors import quote
from projected_gan.official.unpickle import OfficialPickleError, Record

__all__ = ["Mapped", "attr", "fit", "sn_leaf", "state_shapes"]

# torch.nn.utils.spectral_norm's tensors -> our parametrisation's (projected_gan.spectral_norm);
# both keep u (rows) and v (columns) of the same power iteration, so they carry over as they are.
_SN_LEAVES = {
    "weight_orig": "parametrizations.weight.original",
    "weight_u": "parametrizations.weight.0._u",
    "weight_v": "parametrizations.weight.0._v",
}


def sn_leaf(leaf: str) -> str:
    """Our name for a leaf of a spectrally normalised official layer (others stay as they are)."""
    return _SN_LEAVES.get(leaf, leaf)


def attr(record: Record, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Attribute ``name`` of a pickled module, checked to be a ``kind``; error naming it if not."""
    value = record.state.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise OfficialPickleError(
            f"{where}: attribute {name!r} of {record.cls} is {quote(value)}, expected {kind}"
        )
    return value


@dataclass
class Mapped:
    """One network under our names.

    Attributes:
        state: our name -> tensor (what the pickle holds).
        left_at_init: our names the official network has no tensor for -> why.
        ignored: official names deliberately not carried over -> why.
    """

    state: dict[str, Tensor] = field(default_factory=dict)
    left_at_init: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)


def state_shapes(build: Callable[[], nn.Module], device: str = "meta") -> dict[str, torch.Size]:
    """Names and shapes of the state dict of the module ``build()`` makes on ``device`` (the
    default, ``meta``, allocates nothing)."""
    with torch.device(device):
        module = build()
    return {k: v.shape for k, v in module.state_dict().items()}


Rule = tuple[str, Callable[[re.Match[str]], "list[str] | str | None"]]


def rename(
    official: Mapping[str, Tensor],
    rules: list[Rule],
    where: str,
    transforms: Mapping[str, Callable[[Tensor], Tensor]] | None = None,
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Apply the first matching ``(regex, target)`` rule to every official name.

    ``target(match)`` gives our name (or several, when one official tensor feeds several of ours)
    or None to ignore the tensor on purpose. ``transforms[our name]`` reshapes/slices a tensor.
    An official name no rule matches is refused: it is not the known architecture.
    """
    out: dict[str, Tensor] = {}
    ignored: dict[str, str] = {}
    transforms = transforms or {}
    for name, tensor in official.items():
        for pattern, target in rules:
            match = re.fullmatch(pattern, name)
            if match is None:
                continue
            ours = target(match)
            if ours is None:
                ignored[name] = "not used by this library's module"
            else:
                for key in [ours] if isinstance(ours, str) else ours:
                    value = tensor
                    if key in transforms:
                        value = transforms[key](tensor)
                    out[key] = value
            break
        else:
            raise OfficialPickleError(
                f"{where}: unknown tensor {quote(name)} {tuple(tensor.shape)}; this is not a known "
                "official Projected GAN architecture"
            )
    return out, ignored


def fit(
    mapped: dict[str, Tensor],
    expected: Mapping[str, torch.Size],
    where: str,
    absent_ok: Mapping[str, str],
) -> dict[str, str]:
    """Check ``mapped`` against our module's names and shapes.

    Args:
        absent_ok: regex -> reason, for our names the official network has no tensor for.

    Returns:
        Our names left at initialisation, with the reason.
    """
    unknown = sorted(k for k in mapped if k not in expected)
    if unknown:
        raise OfficialPickleError(
            f"{where}: {len(unknown)} tensor(s) have no place in this library's module (first: "
            f"{unknown[0]!r}); the pickle's architecture is not the one its classes name"
        )
    bad = [k for k, v in mapped.items() if v.shape != expected[k]]
    if bad:
        k = bad[0]
        raise OfficialPickleError(
            f"{where}: {len(bad)} tensor(s) have another shape than this library's module "
            f"(first: {k!r} {tuple(mapped[k].shape)}, expected {tuple(expected[k])})"
        )
    left: dict[str, str] = {}
    for name in expected:
        if name in mapped:
            continue
        reason = next((why for pat, why in absent_ok.items() if re.fullmatch(pat, name)), None)
        if reason is None:
            raise OfficialPickleError(
                f"{where}: the pickle has no tensor for {name!r} (of {len(expected)}); it is not "
                "a complete official network"
            )
        left[name] = reason
    return left
