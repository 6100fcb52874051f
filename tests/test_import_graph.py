"""The package's import graph: no cycles, and imports only point downwards.

Every module is parsed with ``ast`` (nothing is imported), and every ``import projected_gan...``
counts: at module level and inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import projected_gan

ROOT = Path(projected_gan.__file__).parent
PARTS = (
    "projectors",
    "discriminators",
    "generators",
    "losses",
    "augmentations",
    "metrics",
    "data",
    "loggers",
)
# The run's description (spec) and what assembles and runs it: parts never import these.
ABOVE_PARTS = (
    "projected_gan.spec",
    "projected_gan.training",
    "projected_gan.cli",
    "projected_gan.commands",
)


def above_parts(module: str) -> bool:
    """Whether ``module`` is one of ABOVE_PARTS or inside one (not merely a name prefix:
    ``projected_gan.spectral_norm`` is not ``projected_gan.spec``)."""
    return any(module == top or module.startswith(top + ".") for top in ABOVE_PARTS)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports, anywhere in the file."""
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py", known)


def imports_in(source: str, own: str, is_package: bool, known: set[str]) -> set[str]:
    """Modules of the package that the source of module ``own`` imports."""
    tree = ast.parse(source)
    package = own if is_package else own.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        # ``import a.b.c`` depends on the deepest module of the package it names.
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name.startswith("projected_gan"):
            found.add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in known else base)
    found.discard(own)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` imports directly or indirectly -> the module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop()
        for nxt in graph.get(node, ()):
            if nxt not in seen and nxt != start:
                seen[nxt] = node
                todo.append(nxt)
    return seen


def path_to(graph: dict[str, set[str]], start: str, target: str) -> str:
    parents = reachable(graph, start)
    chain = [target]
    while chain[-1] != start:
        chain.append(parents[chain[-1]])
    return " -> ".join(reversed(chain))


def test_the_graph_sees_lazy_imports():
    """The parser finds an import inside a function (else the other tests could not fail)."""
    src = "import torch\n\ndef f():\n    from projected_gan.training import trainer, Trainer\n"
    known = {"projected_gan", "projected_gan.training", "projected_gan.training.trainer"}
    found = imports_in(src, "projected_gan.images", False, known)
    assert found == {"projected_gan.training.trainer", "projected_gan.training"}


def test_finding_a_cycle_works():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("part", PARTS)
def test_parts_never_import_the_pipeline(graph, part):
    package = f"projected_gan.{part}"
    bad = []
    for name in graph:
        if name != package and not name.startswith(package + "."):
            continue
        for target in reachable(graph, name):
            if target == "projected_gan" or above_parts(target):
                bad.append(path_to(graph, name, target))
    assert not bad, "parts must not import the pipeline:\n" + "\n".join(sorted(bad)[:10])


def test_inference_does_not_import_training(graph):
    bad = [t for t in reachable(graph, "projected_gan.inference") if above_parts(t)]
    bad += [t for t in reachable(graph, "projected_gan.inference") if t == "projected_gan"]
    assert not bad, "\n".join(path_to(graph, "projected_gan.inference", t) for t in bad)


# Paths that moved before the first release; none of them is kept as an alias.
OLD_PATHS = [
    "projected_gan._deprecated",
    "projected_gan.losses.diffaugment",
    *(
        f"projected_gan.training.{m}"
        for m in [
            "atomic",
            "checkpoint",
            "commands",
            "data",
            "distributed",
            "image_files",
            "images",
            "inference",
            "metrics",
            "loop",
            "build",
            "spec",
            "spec_checks",
            "spec_io",
        ]
    ),
]


def test_old_module_paths_are_gone():
    """Nothing is released, so a moved module leaves no alias: its old path does not import."""
    code = (
        "import importlib, json, sys\n"
        "found = {}\n"
        "for old in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(old)\n"
        "        found[old] = 'imports'\n"
        "    except ModuleNotFoundError as e:\n"
        "        found[old] = 'gone' if e.name == old else f'missing {e.name}'\n"
        "import projected_gan.losses as losses\n"
        "found['losses.DiffAugment'] = 'imports' if hasattr(losses, 'DiffAugment') else 'gone'\n"
        "print(json.dumps(found))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *OLD_PATHS], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == dict.fromkeys([*OLD_PATHS, "losses.DiffAugment"], "gone")


def test_no_module_only_forwards_to_another():
    """No module of the package rebinds ``sys.modules`` or warns about a moved path."""
    bad = []
    for name, path in modules().items():
        text = path.read_text()
        if "sys.modules[" in text or ("DeprecationWarning" in text and "moved" in text):
            bad.append(name)
    assert not bad, f"alias-like modules: {bad}"


def test_no_module_is_over_450_lines():
    """Every module fits in a head: a longer one is split along a seam a reader would name."""
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > 450
    }
    assert not long, f"modules over 450 lines: {long}"
