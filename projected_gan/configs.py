"""Parts that describe themselves: ``part_config(part)``, rebuilt by ``create_from_config``.

Every part built through a registry (``create(...)``, a spec, or constructing a registered class
directly) remembers its registered name and constructor arguments::

    >>> G = create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    >>> part_config(G)["name"], part_config(G)["kwargs"]["ngf"]
    ('fastgan_lite', 8)
    >>> G2 = create_from_config(part_config(G))  # same architecture, fresh weights

A config is plain JSON: ``{"kind": <registry kind>, "name": ..., "kwargs": {...}}``;
:func:`projected_gan.registry.create_from_config` builds it again. Checkpoints store the configs
of G and D, so a generator is rebuilt from its checkpoint alone.

This module also holds the one table of the arguments the pipeline fills in itself
(:data:`PIPELINE_ARGS`): the spec refuses them, the discriminator wires them from the projector,
and the spec form of a config (:func:`spec_form`) leaves them out.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from projected_gan.errors import PartBuildError

__all__ = [
    "PIPELINE_ARGS",
    "PartBuildError",
    "bound_arguments",
    "composite_class",
    "composite_part",
    "part_config",
    "record_on_init",
    "record_part_config",
    "spec_form",
    "wire",
]

PART_CONFIG_ATTR = "_part_config"  # where a built part keeps {"kind", "name", "kwargs"}

# Arguments each kind of part gets from the pipeline, never from a spec: the data's size,
# channels and classes (generators), and what the previous part of the discriminator exposes.
PIPELINE_ARGS: dict[str, tuple[str, ...]] = {
    "generators": ("img_resolution", "img_channels", "c_dim"),
    "projection_heads": ("channels", "reductions"),
    "discriminators": ("channels", "reductions", "image_size", "num_classes"),
}

# Parts assembled from other parts (e.g. ProjectedDiscriminator), rebuilt by kind.
_COMPOSITES: dict[str, type] = {}


def composite_part(kind: str) -> Callable[[type], type]:
    """Class decorator: configs of ``kind`` are rebuilt as ``cls(**kwargs)``.

    For parts made of registered parts that are not in a registry themselves; the class records
    its own config (:func:`record_part_config`) with its sub-parts in :func:`spec_form`.
    """

    def deco(cls: type) -> type:
        _COMPOSITES[kind] = cls
        return cls

    return deco


def composite_class(kind: str, known: list[str] = ()) -> type:
    """The class registered by :func:`composite_part` for ``kind``."""
    if kind not in _COMPOSITES:
        names = ", ".join([*known, *_COMPOSITES])
        raise PartBuildError(f"unknown part kind {kind!r}; known: {names}", field="config.kind")
    return _COMPOSITES[kind]


def bound_arguments(
    factory: Callable[..., Any], kwargs: dict[str, Any], args: tuple = ()
) -> dict[str, Any]:
    """Every keyword argument of a call ``factory(*args, **kwargs)``, defaults filled in.

    A part rebuilt from these gets the same arguments even if a default changes later.
    Unknown signatures give ``kwargs`` as passed.
    """
    try:
        sig = inspect.signature(factory)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return dict(kwargs)
    bound.apply_defaults()
    out: dict[str, Any] = {}
    for key, value in bound.arguments.items():
        kind = sig.parameters[key].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            out[key] = value
    return out


def record_part_config(part: Any, kind: str, name: str, kwargs: dict[str, Any]) -> None:
    """Remember on ``part`` that it is ``name`` of ``kind`` built with ``kwargs`` (best effort:
    objects that take no attributes stay silent)."""
    with contextlib.suppress(AttributeError, TypeError):
        object.__setattr__(
            part, PART_CONFIG_ATTR, {"kind": kind, "name": name, "kwargs": dict(kwargs)}
        )


def record_on_init(cls: type, kind: str, name: str) -> None:
    """Make a registered class record its config when constructed directly, too.

    Only an instance of exactly ``cls`` records (an unregistered subclass is not ``name``).
    """
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is cls:
            record_part_config(self, kind, name, bound_arguments(cls, kwargs, args))

    cls.__init__ = __init__


def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value}, which JSON cannot hold")
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where} is a {type(value).__name__}, not plain data")


def part_config(part: Any) -> dict[str, Any] | None:
    """``{"kind", "name", "kwargs"}`` of a part built through a registry, as plain JSON data.

    None when the part was not built through a registry (a custom module) or an argument is
    not plain data (a module instance, a tensor, ...): then it cannot be rebuilt from a config.
    A ``torch.compile`` wrapper answers for the module it wraps.
    """
    part = getattr(part, "_orig_mod", part)
    config = getattr(part, PART_CONFIG_ATTR, None)
    if not isinstance(config, dict):
        return None
    try:
        return _jsonable(config, "config")
    except TypeError:
        return None


def spec_form(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name": ..., **kwargs}`` without the pipeline's arguments: how a spec names the part."""
    dropped = set(PIPELINE_ARGS.get(config["kind"], ()))
    kwargs = {k: v for k, v in config["kwargs"].items() if k not in dropped}
    return {"name": config["name"], **kwargs}


def wire(kind: str, kwargs: Mapping[str, Any], values: Mapping[str, Any], where: str) -> dict:
    """``kwargs`` plus the pipeline's ``values`` for a part of ``kind``.

    ``values`` must hold only arguments that :data:`PIPELINE_ARGS` lists for the kind (None
    values are left out, for optional ones such as ``num_classes=0``). Setting one of them in
    ``kwargs`` is an error naming ``where``.
    """
    table = set(PIPELINE_ARGS.get(kind, ()))
    stray = set(values) - table
    if stray:  # a bug in the caller, not user input
        raise KeyError(f"{sorted(stray)} are not pipeline arguments of {kind}")
    clash = sorted(set(kwargs) & table)
    if clash:
        raise PartBuildError(
            f"{where}: {clash} are wired automatically by the pipeline (from the previous part "
            "or the data); do not pass them",
            field=f"{where}.{clash[0]}",
        )
    return {**kwargs, **{k: v for k, v in values.items() if v is not None}}
