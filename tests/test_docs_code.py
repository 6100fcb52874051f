"""Every code block of README.md and docs/*.md runs, or says why it cannot; the documents quote
no issue numbers; the spec reference table is current.

Conventions (in the Markdown, on the line right before a fenced block):

- ``<!-- not run: REASON -->``: the block is not executed; REASON says why (a GPU, minutes of
  training, an install) and which test covers the command instead.
- ``<!-- test-setup: NAME -->``: before the block runs, the fixture NAME (see ``SETUPS``) is
  made in the page's working folder, e.g. a small export folder ``my_generator/``.

Every other ``python`` block runs, the blocks of one page in order in one namespace, in a
fresh working folder. Every other ``bash`` block runs line by line; each line must be a
``projected-gan`` command, run in-process through the console script's entry point
(``projected_gan.cli.main``) and expected to exit 0. Blocks in other languages (``text``,
``yaml``, ``toml``) are not executed.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import typing
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
USER_FACING = [
    *DOCUMENTS,
    ROOT / "benchmarks" / "README.md",
    *sorted((ROOT / "benchmarks" / "results").glob("*.md")),
]
RUN_LANGUAGES = ("python", "bash")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
MARKER = re.compile(r"<!--\s*(not run|test-setup):\s*(.*?)\s*-->\s*$")


def code_blocks(path: Path) -> list[dict]:
    """The fenced blocks of a Markdown file: language, code, line, and the marker before it."""
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        blocks.append(
            {
                "lang": match.group(1),
                "code": match.group(2),
                "line": text.count("\n", 0, match.start()) + 1,
                "marker": (marker.group(1), marker.group(2)) if marker else None,
            }
        )
    return blocks


def _my_generator(folder: Path) -> None:
    """``my_generator/``: an export folder of a small FastGAN-lite (32 px)."""
    import projected_gan as pg
    from projected_gan.export import export_generator

    G = pg.create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    export_generator(G, folder / "my_generator", num_samples=0)


SETUPS: dict[str, Callable[[Path], None]] = {"my_generator": _my_generator}


def _bash_commands(code: str) -> list[str]:
    joined = code.replace("\\\n", " ")
    lines = [" ".join(line.split(" #", 1)[0].split()) for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _run_cli(command: str, where: str) -> None:
    from projected_gan.cli import main

    argv = shlex.split(command)
    assert argv[0] == "projected-gan", (
        f"{where}: `{command}` is not a projected-gan command; this test runs only those. "
        "Mark the block `<!-- not run: REASON -->` (saying which test covers it) or split it."
    )
    try:
        code = main(argv[1:])
    except SystemExit as stop:  # argparse's --help and usage errors
        code = stop.code
    assert code in (0, None), f"{where}: `{command}` exited {code}"


# Checks of what some pages' blocks leave behind (beyond running without error).
def _check_readme(ns: dict) -> None:
    g_loss = ns["g_loss"]
    assert g_loss.ndim == 0 and g_loss.requires_grad
    assert sum(p.numel() for p in ns["D"].trainable_parameters()) > 1_000_000


def _check_generate(ns: dict) -> None:
    images = ns["images"]
    assert images.shape == (4, 3, 32, 32) and images.abs().max() <= 1


def _check_logging(ns: dict) -> None:
    logger = ns["PrintLosses"](every=2)
    assert hasattr(logger, "log_scalars")


CHECKS: dict[str, Callable[[dict], None]] = {
    "README.md": _check_readme,
    "generate.md": _check_generate,
    "logging.md": _check_logging,
}


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_code_block_runs_or_says_why_not(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROJECTED_GAN_CACHE", str(tmp_path / "cache"))
    namespace: dict = {"__name__": f"doc_{path.stem}"}
    ran = 0
    for block in code_blocks(path):
        where = f"{path.relative_to(ROOT)}:{block['line']}"
        kind, value = block["marker"] or (None, None)
        if kind == "not run":
            assert len(value) >= 10, f"{where}: say why the block is not run"
            continue
        if block["lang"] not in RUN_LANGUAGES:
            continue
        if kind == "test-setup":
            assert value in SETUPS, f"{where}: unknown test-setup {value!r}"
            SETUPS[value](tmp_path)
        if block["lang"] == "python":
            exec(compile(block["code"], where, "exec"), namespace)
        else:
            commands = _bash_commands(block["code"])
            assert commands, f"{where}: an empty bash block"
            for command in commands:
                _run_cli(command, where)
        ran += 1
    if path.name in CHECKS:
        assert ran, f"{path.name}: its examples are expected to run"
        CHECKS[path.name](namespace)
    capsys.readouterr()


def test_the_block_parser_sees_markers_and_languages(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- not run: needs a GPU (tests/test_cuda.py) -->\n```bash\nnvidia-smi\n```\n\n"
        "```python\nx = 1\n```\n\n<!-- test-setup: my_generator -->\n```python\ny = 2\n```\n"
    )
    blocks = code_blocks(page)
    assert [(b["lang"], b["marker"]) for b in blocks] == [
        ("bash", ("not run", "needs a GPU (tests/test_cuda.py)")),
        ("python", None),
        ("python", ("test-setup", "my_generator")),
    ]
    assert blocks[1]["code"] == "x = 1\n" and blocks[1]["line"] == 8
    assert _bash_commands("# note\nprojected-gan list   # all\nprojected-gan \\\n  --help\n") == [
        "projected-gan list",
        "projected-gan --help",
    ]


def test_an_unmarked_command_that_fails_or_is_not_ours_fails_the_test():
    with pytest.raises(AssertionError, match="exited 2"):
        _run_cli("projected-gan describe generators no_such_generator", "here")
    with pytest.raises(AssertionError, match="not a projected-gan command"):
        _run_cli("pip install -e .", "here")


# --------------------------------------------------------------------------- issue numbers

ISSUE = re.compile(r"(?<![\w&/])#\d+\b|\b(?:issues?|PR|pull request)\s+#?\d+", re.I)
URL = re.compile(r"https?://\S+|\]\(#[^)]*\)")


def issue_numbers(text: str) -> list[str]:
    """Issue-number-like references (``#25``, ``issue 27``) outside URLs and anchor links."""
    return ISSUE.findall(URL.sub("", text))


def test_the_issue_pattern_flags_references_and_spares_headings_and_urls():
    found = issue_numbers("fixed in #25; see issue 27 and issues #3")
    assert found == ["#25", "issue 27", "issues #3"]
    clean = "# Title\n## Section 2\n[a](#section-2) https://x.org/a#L10 &#39; x = y  # 3 px\n"
    assert issue_numbers(clean) == []


@pytest.mark.parametrize("path", USER_FACING, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_issue_numbers_in_user_facing_documents(path):
    found = issue_numbers(path.read_text())
    assert not found, f"{path.relative_to(ROOT)} quotes issue numbers a reader cannot see: {found}"


# ------------------------------------------------------------------------ the README's size


def test_readme_is_a_newcomers_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move details to docs/"


# ------------------------------------------------------------------------- the spec table


def _type_name(annotation) -> str:
    name = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    name = name.replace("typing.", "").replace("NoneType", "None")
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", name)


def _default(field) -> str:
    from pydantic import BaseModel

    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True)
    elif isinstance(value, list):
        value = [v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v for v in value]
    return value if isinstance(value, str) else json.dumps(value)


def _models_in(annotation) -> list:
    from pydantic import BaseModel

    args = typing.get_args(annotation) or (annotation,)
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def spec_table() -> str:
    """The Markdown table of every spec field: key, type, default, meaning."""
    from projected_gan.spec import ExperimentSpec

    rows = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]

    def walk(model, prefix: str) -> None:
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            key = prefix + name
            models = _models_in(field.annotation)
            nested = [m for m in models if m.model_config.get("extra") != "allow"]  # not a part
            if len(nested) == 1 and nested[0] is not ExperimentSpec:
                if field.description:
                    rows.append(f"| `{key}` | section | | {field.description} |")
                walk(nested[0], key + ".")
                continue
            meaning = (field.description or "").replace("|", "\\|")
            kind = _type_name(field.annotation).replace("|", "\\|")
            default = _default(field).replace("|", "\\|")
            rows.append(f"| `{key}` | `{kind}` | `{default}` | {meaning} |")

    walk(ExperimentSpec, "")
    return "\n".join(rows)


def test_spec_reference_table_is_current():
    text = (ROOT / "docs" / "spec.md").read_text()
    match = re.search(r"<!-- spec-table:start -->\n(.*?)\n<!-- spec-table:end -->", text, re.S)
    assert match, "docs/spec.md lost its spec-table markers"
    assert match.group(1) == spec_table(), (
        "docs/spec.md's field table is stale: run `python tests/test_docs_code.py`"
    )


if __name__ == "__main__":  # rewrite docs/spec.md's table
    sys.path.insert(0, str(ROOT))
    spec_page = ROOT / "docs" / "spec.md"
    text = spec_page.read_text()
    new = re.sub(
        r"(<!-- spec-table:start -->\n).*?(<!-- spec-table:end -->)",
        lambda m: m.group(1) + spec_table() + "\n" + m.group(2),
        text,
        flags=re.S,
    )
    spec_page.write_text(new)
