"""A part recorded in a file, checked before it is built: its config, then its shapes.

Checkpoints, export folders and network pickles record a part as ``{"kind", "name", "kwargs"}``
next to its tensors. A crafted file can ask for a generator of any size in a few bytes, so
:func:`build_checked` (1) checks the kind against the slot, every argument against a sane range
(:data:`LIMITS`, plus bounds on any number, text and nesting; a size given as ``[H, W]`` has
the same bounds on each side), (2) builds the part on the ``meta``
device (no memory) and compares every name and shape with the file's tensors, and only then
(3) builds it for real and loads the tensors, whose bytes the file already held.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from projected_gan.errors import InputError, PartBuildError, quote
from projected_gan.registry import create

__all__ = ["LIMITS", "build_checked", "check_fits", "check_part_config", "expected_shapes"]

#: Arguments a recorded part may carry -> the range a real one has (inclusive).
LIMITS: dict[str, tuple[int, int]] = {
    "img_resolution": (4, 4096),
    "image_size": (4, 4096),
    "resolution": (4, 4096),
    "img_channels": (1, 16),
    "z_dim": (1, 8192),
    "w_dim": (1, 8192),
    "c_dim": (0, 100_000),
    "num_classes": (0, 100_000),
    "ngf": (1, 1024),
    "ndf": (1, 1024),
    "map_layers": (0, 64),
    "num_layers": (0, 64),
    "channel_base": (1, 1 << 20),
    "channel_max": (1, 8192),
}
#: Arguments that are an image size: one side, or ``[height, width]`` with each side in range.
SIZE_ARGS = frozenset({"img_resolution", "image_size", "resolution"})
MAX_NUMBER = 1 << 24  # any other number argument
MAX_TEXT = 1000
MAX_ITEMS = 1000
MAX_DEPTH = 6


def _check_value(value: Any, key: str, where: str, error: type[InputError], budget: list[int],
                 depth: int = 0, index: str | None = None) -> None:  # fmt: skip
    # ``key`` picks the bounds (a list's elements keep the list's name, so each side of a size
    # has the size's bounds); ``shown`` is what messages say: "img_resolution[1]".
    shown = index or key
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise error(f"{where}: argument {shown!r} is nested deeper than {MAX_DEPTH} or too large")
    name = key.rpartition(".")[2]
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str) or len(k) > MAX_TEXT:
                raise error(f"{where}: argument {shown!r} has a key {quote(k)}")
            _check_value(v, f"{shown}.{k}", where, error, budget, depth + 1)
    elif isinstance(value, (list, tuple)):
        if name in SIZE_ARGS and len(value) != 2:
            raise error(
                f"{where}: argument {shown} = {quote(value)} is neither one side nor "
                "[height, width]"
            )
        for i, v in enumerate(value):
            _check_value(v, key, where, error, budget, depth + 1, index=f"{shown}[{i}]")
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float)):
        lo, hi = LIMITS.get(name, (-MAX_NUMBER, MAX_NUMBER))
        if not (math.isfinite(value) and lo <= value <= hi):
            raise error(f"{where}: argument {shown} = {quote(value)} is outside {lo}..{hi}")
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise error(f"{where}: argument {shown!r} is a text of {len(value)} characters")
    else:
        raise error(f"{where}: argument {shown!r} is {type(value).__name__}, not a JSON value")


def check_part_config(
    config: Any, kind: str, where: str, error: type[InputError] = PartBuildError
) -> dict[str, Any]:
    """``config`` checked to be a part of ``kind`` with arguments in their ranges."""
    if not isinstance(config, Mapping):
        raise error(f"{where}: the part config is {quote(config)}, not an object")
    if config.get("kind", kind) != kind:
        raise error(f"{where}: the part is of kind {quote(config.get('kind'))}, expected {kind!r}")
    name, kwargs = config.get("name"), config.get("kwargs", {})
    if not isinstance(name, str) or len(name) > 200 or not isinstance(kwargs, Mapping):
        raise error(f"{where}: the part config needs a 'name' text and a 'kwargs' object")
    budget = [MAX_ITEMS]
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise error(f"{where}: argument name {quote(key)}")
        _check_value(value, key, where, error, budget)
    return {"kind": kind, "name": name, "kwargs": dict(kwargs)}


def _create(config: dict[str, Any], where: str, error: type[InputError]) -> nn.Module:
    try:
        return create(config["kind"], config["name"], **config["kwargs"])
    except (TypeError, ValueError, KeyError, ZeroDivisionError, OverflowError) as exc:
        if isinstance(exc, InputError) and not isinstance(exc, PartBuildError):
            raise error(f"{where}: {exc}") from None
        raise error(
            f"{where}: {config['kind']} {config['name']!r} cannot be built with "
            f"{quote(config['kwargs'], 200)}: {exc}"
        ) from None


def expected_shapes(
    config: dict[str, Any], where: str, error: type[InputError] = PartBuildError
) -> dict[str, torch.Size]:
    """Names and shapes of the state dict of the part ``config`` builds (on ``meta``: free)."""
    with torch.device("meta"):
        module = _create(config, where, error)
    return {k: v.shape for k, v in module.state_dict().items()}


def _mismatch(state: Mapping[str, Any], shapes: Mapping[str, torch.Size]) -> str | None:
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes]
    bad = [k for k in shapes if k in state and tuple(state[k].shape) != tuple(shapes[k])]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            parts.append(f"{label}: {', '.join(quote(k, 60) for k in keys[:3])}"
                         f"{f' (+{len(keys) - 3} more)' if len(keys) > 3 else ''}")  # fmt: skip
    if bad:
        k = bad[0]
        parts.append(
            f"shape mismatch: {quote(k, 60)} {tuple(state[k].shape)} vs {tuple(shapes[k])}"
            + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else "")
        )
    return "; ".join(parts) or None


def check_fits(
    config: Any,
    state: Mapping[str, torch.Tensor],
    where: str,
    *,
    kind: str = "generators",
    error: type[InputError] = PartBuildError,
) -> dict[str, Any]:
    """``config`` checked (kind, argument ranges) and found to hold exactly ``state``'s names
    and shapes, without building anything but on the ``meta`` device; returns the config."""
    config = check_part_config(config, kind, where, error)
    problem = _mismatch(state, expected_shapes(config, where, error))
    if problem:
        raise error(f"{where} does not fit {config['name']!r}: {problem}")
    return config


def build_checked(
    config: Any,
    state: Mapping[str, torch.Tensor],
    where: str,
    *,
    kind: str = "generators",
    error: type[InputError] = PartBuildError,
    load: Callable[[nn.Module, Mapping[str, torch.Tensor]], None] | None = None,
) -> nn.Module:
    """The part ``config`` holding ``state``, built only once config and shapes are checked.

    Raises:
        ``error``: a part of another kind, an argument out of range, a part that cannot be
            built, or tensors whose names or shapes are not the part's (named).
    """
    config = check_fits(config, state, where, kind=kind, error=error)
    module = _create(config, where, error)
    if load is None:
        module.load_state_dict(dict(state))
    else:
        load(module, state)
    return module
