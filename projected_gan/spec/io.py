"""Spec files, presets and ``--set`` overrides, as plain dicts (validation is the spec's)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from projected_gan.spec.checks import SpecError

__all__ = ["apply_overrides", "list_presets", "preset_dict", "read_mapping"]


def read_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML or JSON file (empty file: ``{}``)."""
    if not path.is_file():
        raise SpecError([("", f"spec file {str(path)!r} does not exist")])
    text = path.read_text()
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = path.suffix.lstrip(".").upper() or "YAML"
        raise SpecError([("", f"{path}: not valid {kind}: {exc}")]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError([("", f"{path}: expected a mapping of sections at the top level")])
    return raw


def list_presets() -> list[str]:
    """Names of the presets shipped in ``projected_gan/presets``."""
    folder = resources.files("projected_gan") / "presets"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def preset_dict(name: str) -> dict[str, Any]:
    """The raw dict of a shipped preset; a clear error naming the presets otherwise."""
    names = list_presets()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError([("preset", f"{name!r} is not a preset{hint} Presets: {', '.join(names)}")])
    text = (resources.files("projected_gan") / "presets" / f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def apply_overrides(
    raw: dict[str, Any], overrides: Sequence[str | tuple[str, Any]]
) -> dict[str, Any]:
    """Apply ``section.field=value`` strings (values parsed as YAML) to a raw spec dict; a
    ``(key, value)`` pair sets its value as is (a path from a flag stays a string).

    A number in the key indexes a list of the spec: ``discriminator.feature_network.1.name=...``
    sets the second network's name. Indexing is strict: an index past the end, a number where
    the spec has a mapping (a single ``feature_network: {name: ...}`` too: set its fields
    without an index, or give the whole list) and a name where it has a list are errors naming
    the key. A missing section is created; a missing list is not (give it whole:
    ``--set discriminator.feature_network=[lite0, lite1]``).
    """
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        if isinstance(item, tuple):
            _set_path(raw, item[0], item[1])
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError([("--set", f"expected KEY=VALUE with a dotted key, got {item!r}")])
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        _set_path(raw, key, parsed)
    return raw


def _set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw[a][b][0]... = value`` for the dotted ``key`` ``a.b.0...``."""
    parts = key.split(".")
    node: Any = raw  # a dict or a list of the spec
    for depth, part in enumerate(parts):
        slot = _slot(node, part, ".".join(parts[:depth]), key)
        if depth == len(parts) - 1:
            node[slot] = value
            return
        path = ".".join(parts[: depth + 1])
        if isinstance(node, dict) and node.get(slot) is None:
            if _is_index(parts[depth + 1]):
                raise SpecError([(key, f"{path} is not a list in this spec; give it whole")])
            node[slot] = {}
        node = node[slot]
        if not isinstance(node, dict | list):
            raise SpecError([(key, f"{path} is a value, not a section; cannot set {key}")])


def _is_index(part: str) -> bool:
    return part.isascii() and part.isdigit()


def _slot(node: dict[str, Any] | list[Any], part: str, where: str, key: str) -> int | str:
    """``part`` as a key of ``node`` (at path ``where``): an index into a list, a name else."""
    if isinstance(node, dict):
        if _is_index(part):
            what = f"{where or 'the spec'} is a mapping, not a list, so {part} cannot index it"
            fix = (
                f"set its fields by name, or give a list with --set {where}=[...]"
                if where
                else "start the key with a section name"
            )
            raise SpecError([(key, f"{what}: {fix}")])
        return part
    if not _is_index(part):
        raise SpecError([(key, f"{where} is a list; index it with a number: {where}.0.{part}")])
    if int(part) >= len(node):
        raise SpecError([(key, f"index {part} is out of range: {where} has {len(node)} entries")])
    return int(part)
