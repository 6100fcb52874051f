"""Shared fixtures: throwaway plugin distributions, a seeded RNG."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest


def write_distribution(
    root: Path,
    dist: str,
    version: str,
    modules: dict[str, str],
    entry_points: dict[str, dict[str, str]],
) -> Path:
    """Write an installed-looking distribution (modules + ``*.dist-info``) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        path = root / (module.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in eps.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return root


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """Factory: make a throwaway distribution importable for this test only."""
    import projected_gan

    made: list[str] = []

    def make(dist, version, modules, entry_points):
        root = write_distribution(tmp_path / dist, dist, version, modules, entry_points)
        monkeypatch.syspath_prepend(str(root))
        made.extend(m.split(".")[0] for m in modules)
        for registry in projected_gan.REGISTRIES.values():
            registry.refresh_plugins()
        return root

    yield make
    for registry in projected_gan.REGISTRIES.values():
        registry.refresh_plugins()
    for name in list(sys.modules):
        if name.split(".")[0] in made:
            del sys.modules[name]
