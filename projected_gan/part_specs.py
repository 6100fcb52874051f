"""Parts given in spec form, built through their registry: a module, a name, or a dict.

A part argument (``ProjectedDiscriminator(feature_network=...)``, an augmentation's inner
augmentation) takes a ready ``nn.Module``, a registered name, or ``{"name": ..., **kwargs}``:
the spec form :func:`~projected_gan.configs.spec_form` writes. :func:`build_part` builds it;
:func:`under_argument` places a part's :class:`PartBuildError` under the argument that named it,
so an error in a spec says which section held the bad value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from torch import nn

from projected_gan.configs import wire
from projected_gan.errors import PartBuildError
from projected_gan.registry import RegistryEntry, get_registry

__all__ = ["PartSpec", "build_part", "under_argument"]

PartSpec = nn.Module | str | Mapping[str, Any]


def build_part(
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
    kwargs = wire(kind, kwargs, wiring or {}, argument)
    registry = get_registry(kind)
    defaults = {k: v for k, v in (defaults or {}).items() if _accepts(registry.entry(name), k)}
    with under_argument(argument, keep=tuple(wiring or ())):
        return registry.create(name, **{**defaults, **kwargs})


@contextlib.contextmanager
def under_argument(argument: str, keep: tuple[str, ...] = ()) -> Iterator[None]:
    """Place a part's :class:`PartBuildError` under ``argument`` (``policy`` ->
    ``augment.policy``), so a spec error names the section; wired arguments (``keep``) are the
    previous part's doing and keep their bare name."""
    try:
        yield
    except PartBuildError as exc:
        field = exc.field
        if field not in keep and not (field == argument or f"{field}".startswith(argument + ".")):
            exc.field = argument if not field else f"{argument}.{field}"
        raise


def _accepts(entry: RegistryEntry, keyword: str) -> bool:
    """Whether the factory takes ``keyword`` (a plugin network may have no ``pretrained``)."""
    sig = entry.signature()
    if sig is None:
        return True
    params = sig.parameters.values()
    return keyword in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in params)
