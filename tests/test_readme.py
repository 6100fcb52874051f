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


def test_readme_main_command_runs_the_minimal_example():
    assert "examples/train_minimal.py" in README
    assert (ROOT / "examples" / "train_minimal.py").is_file()


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README lost its Python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    g_loss = namespace["g_loss"]
    assert g_loss.ndim == 0 and g_loss.requires_grad
    assert sum(p.numel() for p in namespace["D"].trainable_parameters()) > 1_000_000
