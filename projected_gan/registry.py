"""Registries of swappable parts, with lazy entry-point plugins.

One :class:`Registry` per kind of part. Built-ins register themselves with a decorator when their
subpackage is imported; third-party distributions declare entry points in the group
``projected_gan.<kind>`` and are imported only when one of their names is requested
(:mod:`projected_gan.plugins`). The words the registries print (cards, did-you-mean hints) are
in :mod:`projected_gan.part_docs`.

    >>> from projected_gan.registry import GENERATORS
    >>> @GENERATORS.register("my_gen", tags=("toy",))
    ... def my_gen(img_resolution: int = 64): ...
    >>> "my_gen" in GENERATORS
    True
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from projected_gan.configs import (
    PartBuildError,
    bound_arguments,
    composite_class,
    part_config,
    record_on_init,
    record_part_config,
)
from projected_gan.errors import InputError
from projected_gan.part_docs import describe_lines, did_you_mean, show_kwargs
from projected_gan.plugins import PluginError, PluginGroup, PluginSlot, PluginWarning

__all__ = [
    "AUGMENTATIONS",
    "DISCRIMINATORS",
    "FEATURE_NETWORKS",
    "GENERATORS",
    "LOGGERS",
    "LOSSES",
    "METRICS",
    "PROJECTION_HEADS",
    "REGISTRIES",
    "PluginError",
    "PluginWarning",
    "Registry",
    "RegistryEntry",
    "UnknownPartError",
    "create",
    "create_from_config",
    "get_registry",
    "list_parts",
    "part_config",
    "parts_table",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*/?$")


class UnknownPartError(InputError):
    """A name that no registry entry (built-in or plugin) answers to."""


@dataclass(frozen=True)
class RegistryEntry:
    """What a registry knows about one part."""

    name: str
    factory: Callable[..., Any]
    kind: str
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    distribution: str | None = None  # None = built-in
    version: str | None = None
    entry_point: str | None = None  # "name = module:attr" for plugins

    @property
    def is_plugin(self) -> bool:
        return self.distribution is not None

    @property
    def summary(self) -> str:
        target = self.factory.func if isinstance(self.factory, functools.partial) else self.factory
        doc = inspect.getdoc(target) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def source(self) -> str:
        if self.is_plugin:
            return f"plugin {self.distribution} {self.version} ({self.entry_point})"
        target = self.factory.func if isinstance(self.factory, functools.partial) else self.factory
        return f"built-in ({target.__module__}.{target.__qualname__})"

    def signature(self) -> inspect.Signature | None:
        target = self.factory.__init__ if inspect.isclass(self.factory) else self.factory
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            return None
        params = [p for p in sig.parameters.values() if p.name != "self"]
        return sig.replace(parameters=params, return_annotation=inspect.Signature.empty)

    def defaults(self) -> dict[str, Any]:
        """Keyword defaults of the factory, in declaration order."""
        sig = self.signature()
        if sig is None:
            return {}
        return {
            p.name: p.default
            for p in sig.parameters.values()
            if p.default is not inspect.Parameter.empty
        }


class Registry:
    """Name -> factory table for one kind of part, plus that kind's entry-point group.

    Args:
        kind: plural identifier, e.g. ``"feature_networks"``; the entry-point group is
            ``projected_gan.<kind>``.
        singular: how one part is called in messages, e.g. ``"feature network"``.
    """

    def __init__(self, kind: str, singular: str) -> None:
        self.kind = kind
        self.singular = singular
        self._entries: dict[str, RegistryEntry] = {}
        self._aliases: dict[str, str] = {}
        self._plugins = PluginGroup(kind, singular)
        self.group = self._plugins.group  # the entry-point group, projected_gan.<kind>

    # ----------------------------------------------------------------- registration
    def register(
        self,
        name: str | None = None,
        *,
        aliases: Iterable[str] = (),
        tags: Iterable[str] = (),
        override: bool = False,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a class or factory function under ``name`` (default: its own)."""

        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            self.add(
                name or factory.__name__, factory, aliases=aliases, tags=tags, override=override
            )
            return factory

        return deco

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        aliases: Iterable[str] = (),
        tags: Iterable[str] = (),
        override: bool = False,
    ) -> RegistryEntry:
        """Register ``factory`` under ``name``; the non-decorator form of :meth:`register`."""
        if not callable(factory):
            raise TypeError(f"{self.kind}: {name!r} must be a class or function, got {factory!r}")
        entry = RegistryEntry(
            name=name, factory=factory, kind=self.kind, aliases=tuple(aliases), tags=tuple(tags)
        )
        self._insert(entry, override=override)
        if inspect.isclass(factory):
            record_on_init(factory, self.kind, name)
        return entry

    def _insert(self, entry: RegistryEntry, *, override: bool) -> None:
        for key in (entry.name, *entry.aliases):
            if not _NAME_RE.match(key):
                raise ValueError(
                    f"{self.kind}: invalid name {key!r} (letters, digits, '_', '.', '-', '/')"
                )
            taken = key in self._entries or key in self._aliases
            if taken and not override:
                owner = self._aliases.get(key, key)
                raise ValueError(
                    f"{self.kind}: {key!r} is already registered "
                    f"(by {self._entries[owner].source}); pass override=True to replace it"
                )
        if override:
            self.remove(entry.name, missing_ok=True)
        self._entries[entry.name] = entry
        for alias in entry.aliases:
            self._aliases[alias] = entry.name

    def remove(self, name: str, *, missing_ok: bool = False) -> None:
        """Forget ``name`` and its aliases (mainly for tests and overrides)."""
        name = self._aliases.get(name, name)
        entry = self._entries.pop(name, None)
        if entry is None:
            if missing_ok:
                return
            raise self._unknown(name)
        for alias in entry.aliases:
            self._aliases.pop(alias, None)

    # --------------------------------------------------------------------- plugins
    def _plugin_slots(self) -> dict[str, PluginSlot]:
        """Enabled entry points of this kind whose name no built-in holds (nothing imported)."""
        return self._plugins.visible(lambda name: self._entries.get(self._aliases.get(name, name)))

    def refresh_plugins(self) -> None:
        """Re-read entry-point metadata (after installing a plugin in a running process)."""
        for slot in self._plugins.forget():
            if self._entries.get(slot.loaded.name) is slot.loaded:
                del self._entries[slot.loaded.name]

    def _load_plugin(self, name: str, slot: PluginSlot) -> RegistryEntry:
        if slot.loaded is None:
            entry = RegistryEntry(
                name=name,
                factory=self._plugins.load(name, slot),
                kind=self.kind,
                distribution=slot.distribution,
                version=slot.version,
                entry_point=f"{name} = {slot.ep.value}",
            )
            self._entries[name] = entry
            slot.loaded = entry
        return slot.loaded

    # ---------------------------------------------------------------------- lookup
    def entry(self, name: str) -> RegistryEntry:
        """The :class:`RegistryEntry` for ``name`` (alias, built-in, family member or plugin).

        A name registered with a trailing ``/`` (e.g. ``"timm/"``) is a family: ``"timm/resnet50"``
        resolves to that factory with ``"resnet50"`` bound as its first argument.
        """
        key = self._aliases.get(name, name)
        found = self._entries.get(key)
        if found is not None and not (found.is_plugin and self._disabled(found)):
            return found
        prefix, sep, member = name.partition("/")
        family = self._entries.get(prefix + sep) if sep and member else None
        if family is not None:
            return replace(family, name=name, factory=functools.partial(family.factory, member))
        slot = self._plugin_slots().get(name)
        if slot is not None:
            return self._load_plugin(name, slot)
        raise self._unknown(name)

    def _disabled(self, entry: RegistryEntry) -> bool:
        return self._plugins.is_disabled(entry.name, entry.distribution)

    def get(self, name: str) -> Callable[..., Any]:
        """The factory (class or function) registered as ``name``."""
        return self.entry(name).factory

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build the part ``name`` with ``kwargs``; the result remembers both (see
        :func:`projected_gan.configs.part_config`)."""
        entry = self.entry(name)
        try:
            part = entry.factory(**kwargs)
        except InputError:
            raise  # already says what is wrong (and, for a PartBuildError, which argument)
        except Exception as exc:
            if type(exc).__module__.startswith("projected_gan."):
                raise  # our own typed errors (missing weights, ...) already say what to do
            # Any other failure in a constructor is almost always a refused argument (a plugin
            # asserting width > 0, a negative size reaching torch): name the part and where it
            # comes from; the original exception stays chained for debugging.
            origin = f" (plugin {entry.distribution} {entry.version})" if entry.is_plugin else ""
            raise PartBuildError(
                f"{self.singular} {entry.name!r}{origin} could not be built with "
                f"{show_kwargs(kwargs)}: {type(exc).__name__}: {exc}"
            ) from exc
        record_part_config(part, self.kind, entry.name, bound_arguments(entry.factory, kwargs))
        return part

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.entry(name)
        except UnknownPartError:
            return False
        return True

    def names(
        self, pattern: str = "*", *, tags: Iterable[str] = (), plugins: bool = True
    ) -> list[str]:
        """Sorted names matching the fnmatch ``pattern`` (and all ``tags``); plugins by metadata."""
        wanted = set(tags)
        found = {
            n
            for n, e in self._entries.items()
            if not (e.is_plugin and (not plugins or self._disabled(e))) and wanted <= set(e.tags)
        }
        if plugins and not wanted:
            found |= set(self._plugin_slots())
        return sorted(n for n in found if fnmatch.fnmatchcase(n, pattern))

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def plugin_distribution(self, name: str) -> str | None:
        """Distribution that provides ``name``, without importing it; None for built-ins."""
        key = self._aliases.get(name, name)
        if key in self._entries:
            return self._entries[key].distribution
        slot = self._plugin_slots().get(name)
        return None if slot is None else f"{slot.distribution} {slot.version}"

    def summary_line(self, name: str, width: int = 0) -> str:
        """``name  summary  (alias: ...)`` for a built-in; ``name  [plugin: dist version]`` for
        a plugin, whose module is not imported just to be listed."""
        dist = self.plugin_distribution(name)
        if dist:
            return f"{name}  [plugin: {dist}]"
        entry = self.entry(name)
        line = f"{name:<{width}}  {entry.summary}"
        if entry.aliases:
            line += f"  (alias: {', '.join(entry.aliases)})"
        return line.rstrip()

    def describe(self, name: str) -> str:
        """Human-readable card: summary, signature with defaults, aliases, tags, source."""
        e = self.entry(name)
        sig = e.signature()
        lines = [f"{self.kind} / {e.name}"]
        if e.summary:
            lines.append(f"  {e.summary}")
        lines.append(f"  source:   {e.source}")
        if e.aliases:
            lines.append(f"  aliases:  {', '.join(e.aliases)}")
        if e.tags:
            lines.append(f"  tags:     {', '.join(e.tags)}")
        lines += describe_lines(e.factory, sig)
        return "\n".join(lines)

    def _unknown(self, name: str) -> UnknownPartError:
        candidates = list(self._entries) + list(self._aliases) + list(self._plugin_slots())
        hint = (did_you_mean(name, candidates) or ".") + self._plugins.disabled_hint(name)
        return UnknownPartError(
            f"{name!r} is not a registered {self.singular}{hint} "
            f"See all with `projected-gan list {self.kind}` "
            f"or projected_gan.list_parts({self.kind!r})."
        )

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} built-in)"


FEATURE_NETWORKS = Registry("feature_networks", "feature network")
PROJECTION_HEADS = Registry("projection_heads", "projection head")
DISCRIMINATORS = Registry("discriminators", "discriminator")
GENERATORS = Registry("generators", "generator")
LOSSES = Registry("losses", "loss")
AUGMENTATIONS = Registry("augmentations", "augmentation")
METRICS = Registry("metrics", "metric")
LOGGERS = Registry("loggers", "logger")

REGISTRIES: dict[str, Registry] = {
    r.kind: r
    for r in (
        FEATURE_NETWORKS,
        PROJECTION_HEADS,
        DISCRIMINATORS,
        GENERATORS,
        LOSSES,
        AUGMENTATIONS,
        METRICS,
        LOGGERS,
    )
}


def get_registry(kind: str) -> Registry:
    """The registry for ``kind`` (e.g. ``"generators"``); a clear error for unknown kinds."""
    try:
        return REGISTRIES[kind]
    except KeyError:
        hint = did_you_mean(kind, REGISTRIES, n=1)
        raise UnknownPartError(
            f"{kind!r} is not a kind of part{hint} Kinds: {', '.join(REGISTRIES)}."
        ) from None


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """Build the registered part ``name`` of ``kind``: ``create("generators", "fastgan_lite")``."""
    return get_registry(kind).create(name, **kwargs)


def list_parts(kind: str | None = None, pattern: str = "*") -> dict[str, list[str]] | list[str]:
    """Names of one kind (a list), or of every kind (a dict kind -> names)."""
    if kind is not None:
        return get_registry(kind).names(pattern)
    return {k: r.names(pattern) for k, r in REGISTRIES.items()}


def parts_table(plugins: bool = False) -> str:
    """Markdown table of the registered parts (built-ins only unless ``plugins``): README's."""
    rows = ["| kind | name | summary |", "| --- | --- | --- |"]
    for kind, registry in REGISTRIES.items():
        for name in registry.names(plugins=plugins):
            entry = registry.entry(name)
            alias = f" (alias: {', '.join(entry.aliases)})" if entry.aliases else ""
            summary = entry.summary.replace("|", "\\|")
            rows.append(f"| {kind} | `{name}`{alias} | {summary} |")
    return "\n".join(rows)


def create_from_config(config: dict[str, Any]) -> Any:
    """A new part from a :func:`~projected_gan.configs.part_config` (fresh weights: load a
    state dict afterwards)."""
    if not isinstance(config, dict) or not {"kind", "name", "kwargs"} <= set(config):
        raise PartBuildError(
            f"a part config is a mapping with kind, name and kwargs, got {config!r}",
            field="config",
        )
    kind, name, kwargs = config["kind"], config["name"], copy.deepcopy(config["kwargs"])
    if kind in REGISTRIES:
        return REGISTRIES[kind].create(name, **kwargs)
    return composite_class(kind, known=list(REGISTRIES))(**kwargs)
