"""Checking a spec against the registries, and turning validation errors into field paths.

A part section is ``{name: <registered name>, **kwargs}``: the name is looked up in its registry
(plugins included) and the kwargs against the part's signature. Problems are
``(field_path, message)`` pairs, gathered into one :class:`SpecError`.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from projected_gan.configs import PIPELINE_ARGS
from projected_gan.errors import InputError
from projected_gan.registry import REGISTRIES

__all__ = [
    "NAME_FIELDS",
    "PART_FIELDS",
    "PartField",
    "PartSpec",
    "SpecError",
    "build_problems",
    "check_part",
    "part_problems",
    "validation_problems",
]


class SpecError(InputError):
    """An invalid spec. ``problems`` holds ``(field_path, message)`` pairs; ``field`` the first."""

    headline = "invalid spec"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        message = "\n".join(f"{path}: {msg}" if path else msg for path, msg in problems)
        super().__init__(message, field=problems[0][0] if problems else None)


class PartSpec(BaseModel):
    """``{name: ..., **kwargs}`` for one registered part; the kwargs go to its factory.

    A plain string is short for ``{name: <string>}``.
    """

    model_config = ConfigDict(extra="allow")
    name: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def check_part(
    kind: str,
    part: PartSpec,
    path: str,
    name_path: str | None = None,
    field: PartField | None = None,
) -> list[tuple[str, str]]:
    """Problems with ``part`` as a ``kind`` (unknown or refused name, unknown or pipeline kwargs).

    ``path`` is the section's field path; ``name_path`` where the name itself sits
    (default ``<path>.name``); ``field`` what the section refuses (e.g. regularisers as a loss).
    """
    name_path = name_path or f"{path}.name"
    registry = REGISTRIES[kind]
    try:
        entry = registry.entry(part.name)
    except InputError as exc:
        return [(name_path, str(exc))]
    refused = sorted(set(entry.tags) & set(field.refuse_tags if field else ()))
    if refused:
        return [(name_path, f"{part.name!r} is a {refused[0]}, {field.hint}")]
    problems = []
    injected = set(PIPELINE_ARGS.get(kind, ()))
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


@dataclass(frozen=True)
class PartField:
    """Where a part sits in a spec, its registry, and what the field refuses.

    ``own`` are the section's own fields (not the part's arguments); a registered name carrying
    one of ``refuse_tags`` is refused with ``hint`` (e.g. R1, a regulariser, as the loss).
    """

    path: str
    kind: str
    own: tuple[str, ...] = ()
    refuse_tags: tuple[str, ...] = ()
    hint: str = ""
    build: bool = False  # cheap to build (no weights, no pipeline args): try the values too


PART_FIELDS: tuple[PartField, ...] = (
    PartField("generator", "generators"),
    PartField("discriminator.feature_network", "feature_networks"),
    PartField("discriminator.projection_head", "projection_heads"),
    PartField("discriminator.discriminator", "discriminators"),
    PartField("discriminator.augment", "augmentations", build=True),
    PartField(
        "loss",
        "losses",
        own=("r1_gamma", "r2_gamma", "penalty_interval"),
        refuse_tags=("regularizer",),
        hint=(
            "not an adversarial loss; turn the penalties on with loss.r1_gamma / loss.r2_gamma "
            "(and loss.penalty_interval)"
        ),
    ),
    PartField("output.loggers", "loggers"),
)
# Fields holding just a registered name.
NAME_FIELDS: tuple[tuple[str, str], ...] = (("metrics.feature_network", "feature_networks"),)


def part_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Registry problems of every part in a (possibly still invalid) spec dict."""

    def get(path: str) -> Any:
        node: Any = raw
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return node

    problems: list[tuple[str, str]] = []
    for field in PART_FIELDS:
        node = get(field.path)
        # A list (several feature networks) is checked entry by entry: <path>.<i>.name
        entries = enumerate(node) if isinstance(node, list) else [(None, node)]
        for i, item in entries:
            where = field.path if i is None else f"{field.path}.{i}"
            if isinstance(item, str):
                item = {"name": item}
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                part = PartSpec.model_validate(
                    {k: v for k, v in item.items() if k not in field.own}
                )
                found = check_part(field.kind, part, where, field=field)
                if not found and field.build:
                    found = build_problems(field.kind, part, where)
                problems += found
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


def build_problems(kind: str, part: PartSpec, path: str) -> list[tuple[str, str]]:
    """Build ``part`` once to check its argument values (a policy's op names, a range); the
    refusal goes under ``<path>.<argument>`` when the part names the argument."""
    try:
        REGISTRIES[kind].create(part.name, **part.kwargs)
    except InputError as exc:
        where = getattr(exc, "field", None)
        return [(f"{path}.{where}" if where else path, str(exc))]
    return []


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
