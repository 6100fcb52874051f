"""Spec files, presets and ``--set`` overrides, as plain dicts (validation is the spec's)."""

from __future__ import annotations

import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from projected_gan.training.spec_checks import SpecError

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


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``section.field=value`` strings (values parsed as YAML) to a raw spec dict."""
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError([("--set", f"expected KEY=VALUE with a dotted key, got {item!r}")])
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise SpecError([(key, f"{where} is a value, not a section; cannot set {key}")])
            node = child
        node[parts[-1]] = parsed
    return raw
