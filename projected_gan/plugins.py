"""Entry-point plugins of one kind of part: found in installed metadata, imported on first use.

A third-party distribution declares entry points in the group ``projected_gan.<kind>``; a
:class:`PluginGroup` lists them without importing anything, honours the
``PROJECTED_GAN_DISABLE_PLUGINS`` switch, and imports one only when its name is asked for.
:class:`projected_gan.registry.Registry` owns one group per kind and turns what it loads into
registry entries.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from projected_gan.errors import InputError

__all__ = [
    "DISABLE_ENV",
    "PluginError",
    "PluginGroup",
    "PluginSlot",
    "PluginWarning",
    "disabled_plugins",
]

DISABLE_ENV = "PROJECTED_GAN_DISABLE_PLUGINS"


class PluginError(InputError):
    """A plugin entry point that cannot be imported or does not give a callable."""


class PluginWarning(UserWarning):
    """A plugin that was ignored (name clash with a built-in)."""


def disabled_plugins() -> tuple[bool, set[str]]:
    """Read ``PROJECTED_GAN_DISABLE_PLUGINS``: ``1``/``all`` or a comma list of names."""
    raw = os.environ.get(DISABLE_ENV, "").strip()
    if not raw or raw.lower() in {"0", "false", "no"}:
        return False, set()
    if raw.lower() in {"1", "true", "yes", "all", "*"}:
        return True, set()
    return False, {part.strip() for part in raw.split(",") if part.strip()}


@dataclass
class PluginSlot:
    """An entry point seen in metadata; ``loaded`` is what the registry made of it once imported."""

    ep: metadata.EntryPoint
    distribution: str
    version: str
    loaded: Any = None
    clash_reported: bool = False


class PluginGroup:
    """The entry points of one kind of part (group ``projected_gan.<kind>``).

    Args:
        kind: plural identifier of the kind, e.g. ``"feature_networks"``.
        singular: how one part is called in messages, e.g. ``"feature network"``.
    """

    def __init__(self, kind: str, singular: str) -> None:
        self.kind = kind
        self.singular = singular
        self.group = f"projected_gan.{kind}"
        self._slots: dict[str, PluginSlot] | None = None  # read from metadata on first use

    def all_slots(self) -> dict[str, PluginSlot]:
        """Every entry point of the group, disabled ones included; read once, nothing imported."""
        if self._slots is None:
            slots: dict[str, PluginSlot] = {}
            for ep in metadata.entry_points(group=self.group):
                dist = getattr(ep, "dist", None)
                slots.setdefault(
                    ep.name,
                    PluginSlot(
                        ep=ep,
                        distribution=dist.metadata["Name"] if dist is not None else "<unknown>",
                        version=dist.version if dist is not None else "?",
                    ),
                )
            self._slots = slots
        return self._slots

    def is_disabled(self, name: str, distribution: str | None) -> bool:
        """Whether ``PROJECTED_GAN_DISABLE_PLUGINS`` switches off this plugin name."""
        everything_off, off = disabled_plugins()
        return everything_off or bool({name, f"{self.kind}:{name}", distribution} & off)

    def visible(self, owner: Callable[[str], Any]) -> dict[str, PluginSlot]:
        """Enabled entry points whose name is free.

        ``owner(name)`` gives the registry entry that holds ``name`` (or None); a plugin whose
        name a built-in holds is ignored, with one :class:`PluginWarning`.
        """
        found = {}
        for name, slot in self.all_slots().items():
            if self.is_disabled(name, slot.distribution):
                continue
            taken_by = owner(name)
            if taken_by is not None and taken_by is not slot.loaded:
                if not slot.clash_reported:
                    slot.clash_reported = True
                    warnings.warn(
                        f"plugin {self.singular} {name!r} from distribution "
                        f"{slot.distribution!r} ({slot.ep.value}) is ignored: the name is taken "
                        f"by {taken_by.source}. Ask the plugin's author to rename it.",
                        PluginWarning,
                        stacklevel=4,
                    )
                continue
            found[name] = slot
        return found

    def forget(self) -> list[PluginSlot]:
        """Drop what was read from metadata (to re-read it); returns the slots already loaded."""
        loaded = [s for s in (self._slots or {}).values() if s.loaded is not None]
        self._slots = None
        return loaded

    def load(self, name: str, slot: PluginSlot) -> Callable[..., Any]:
        """Import the entry point ``name``: its class or factory function.

        Raises:
            PluginError: the import failed, or the entry point names something not callable.
        """
        where = f"entry point {name!r} = {slot.ep.value!r} of distribution {slot.distribution!r}"
        try:
            obj = slot.ep.load()
        except Exception as exc:  # any import-time failure is the plugin's, not ours
            raise PluginError(
                f"{self.singular} plugin failed to import: {where} "
                f"(group {self.group}): {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(obj):
            raise PluginError(
                f"{self.singular} plugin is not callable: {where} gave {type(obj).__name__}; "
                "an entry point must name a class or a factory function"
            )
        return obj

    def disabled_hint(self, name: str) -> str:
        """Why a name may be unknown because of the disable switch ("" when it is not)."""
        everything_off, off = disabled_plugins()
        hidden = (self._slots or {}).get(name)
        if hidden is not None:
            return (
                f" A plugin from {hidden.distribution!r} provides it, but "
                f"{DISABLE_ENV}={os.environ.get(DISABLE_ENV)!r} disables it."
            )
        if everything_off or off:
            return (
                f" Note: {DISABLE_ENV}={os.environ.get(DISABLE_ENV)!r} disables plugins, so a "
                "plugin's parts are not visible."
            )
        return ""
