"""README promises that tests keep true: the parts table, the CI command, the examples."""

import re
from pathlib import Path

from projected_gan.registry import parts_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_parts_table_is_current():
    match = re.search(r"<!-- parts-table:start -->\n(.*?)\n<!-- parts-table:end -->", README, re.S)
    assert match, "README lost its parts-table markers"
    assert match.group(1) == parts_table(), (
        "README's parts table is stale: paste the output of `projected-gan list --markdown`"
    )


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(python -m pytest[^\n]*)\n```", README)
    assert commands == ["python -m pytest"]
    ci_lines = [line.strip() for line in ci.splitlines()]
    assert commands[0] in ci_lines
    assert "bash .ci/run" in README


def test_ci_builds_the_docs_strictly_before_the_tests():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    build = [i for i, line in enumerate(ci) if "mkdocs build --strict" in line]
    assert build and build[0] < ci.index("python -m pytest")


def test_readme_main_command_runs_the_minimal_example():
    assert "examples/train_minimal.py" in README
    assert (ROOT / "examples" / "train_minimal.py").is_file()


# README's Python example runs (with checks on what it builds) in tests/test_docs_code.py,
# with every other code block of README.md and docs/*.md.
