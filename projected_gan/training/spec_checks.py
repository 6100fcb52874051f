"""Checking a spec against the registries, and turning validation errors into field paths.

A part section is ``{name: <registered name>, **kwargs}``: the name is looked up in its registry
(plugins included) and the kwargs against the part's signature. Problems are
``(field_path, message)`` pairs, gathered into one :class:`SpecError`.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from projected_gan.registry import REGISTRIES, PluginError, UnknownPartError

__all__ = [
    "INJECTED_ARGS",
    "NAME_FIELDS",
    "PART_FIELDS",
    "PartSpec",
    "SpecError",
    "check_part",
    "part_problems",
    "validation_problems",
]


# Arguments build_from_spec supplies itself; a spec must not set them.
INJECTED_ARGS: dict[str, tuple[str, ...]] = {
    "generators": ("img_resolution", "c_dim"),
    "projection_heads": ("channels", "reductions"),
    "discriminators": ("channels", "reductions", "image_size", "num_classes"),
}


class SpecError(ValueError):
    """An invalid spec. ``problems`` holds ``(field_path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{path}: {msg}" if path else msg for path, msg in problems))


class PartSpec(BaseModel):
    """``{name: ..., **kwargs}`` for one registered part; the kwargs go to its factory."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def check_part(
    kind: str, part: PartSpec, path: str, name_path: str | None = None
) -> list[tuple[str, str]]:
    """Problems with ``part`` as a ``kind`` (unknown name, unknown or injected kwargs).

    ``path`` is the section's field path; ``name_path`` where the name itself sits
    (default ``<path>.name``).
    """
    registry = REGISTRIES[kind]
    try:
        entry = registry.entry(part.name)
    except (UnknownPartError, PluginError) as exc:
        return [(name_path or f"{path}.name", str(exc))]
    problems = []
    injected = set(INJECTED_ARGS.get(kind, ()))
    for key in part.kwargs:
        if key in injected:
            problems.append((f"{path}.{key}", "is set by the pipeline itself; remove it"))
    sig = entry.signature()
    if sig is None or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return problems
    accepted = [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    for key in part.kwargs:
        if key not in accepted and key not in injected:
            usable = ", ".join(a for a in accepted if a not in injected) or "none"
            problems.append(
                (f"{path}.{key}", f"{part.name!r} has no argument {key!r}; it accepts: {usable}")
            )
    return problems


# Where parts sit in a spec, and their registry. Name-only parts are plain strings.
PART_FIELDS: tuple[tuple[str, str], ...] = (
    ("generator", "generators"),
    ("discriminator.feature_network", "feature_networks"),
    ("discriminator.projection_head", "projection_heads"),
    ("discriminator.discriminator", "discriminators"),
    ("discriminator.augment", "augmentations"),
)
NAME_FIELDS: tuple[tuple[str, str], ...] = (
    ("loss.name", "losses"),
    ("metrics.feature_network", "feature_networks"),
)


def part_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Registry problems of every part in a (possibly still invalid) spec dict."""

    def get(path: str) -> Any:
        node: Any = raw
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return node

    problems: list[tuple[str, str]] = []
    for path, kind in PART_FIELDS:
        node = get(path)
        if isinstance(node, dict) and isinstance(node.get("name"), str):
            problems += check_part(kind, PartSpec.model_validate(node), path)
    named = list(NAME_FIELDS)
    names = get("metrics.names")
    if isinstance(names, list):
        named += [(f"metrics.names.{i}", "metrics") for i in range(len(names))]
    for path, kind in named:
        parent, _, key = path.rpartition(".")
        node = get(parent)
        value = node[int(key)] if isinstance(node, list) else get(path)
        if isinstance(value, str):
            problems += check_part(kind, PartSpec(name=value), path, name_path=path)
    return problems


def validation_problems(exc: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """``(field_path, message)`` for each error of ``exc``, raised validating ``root``."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; " + _known_fields(root, err["loc"])
        elif err["type"] in {"literal_error", "enum"}:
            msg = f"{msg} (got {err.get('input')!r})"
        problems.append((loc, msg))
    return problems


def _known_fields(root: type[BaseModel], loc: tuple) -> str:
    model = root
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        candidates = [ann, *getattr(ann, "__args__", ())]
        nested = next(
            (c for c in candidates if inspect.isclass(c) and issubclass(c, BaseModel)), None
        )
        if nested is None:
            return "check the spelling"
        model = nested
    names = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}accepted: {', '.join(names)}"
