"""The preemption soak: flags are checked, and a short soak resumes cleanly (slow)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "kill_soak.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("kill_soak", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--kills", "0"], "--kills"),
        (["--kills", "1", "--threads", "0"], "--threads"),
        (["--kills", "1", "--kimg", "0.016"], "--kimg"),
        (["--kills", "1", "--moments", "training,reboot"], "--moments"),
        (["--kills", "1", "--signal", "HUP"], "--signal"),
    ],
)
def test_bad_arguments_name_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit):
        _load_script().parse_args(argv)
    assert flag in capsys.readouterr().err


@pytest.mark.slow
def test_two_kills_one_mid_checkpoint_write_leave_nothing_behind(tmp_path):
    out = tmp_path / "soak.json"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--kills",
        "2",
        "--moments",
        "checkpoint_write",  # the second kill; the first is always during training
        "--kimg",
        "0.048",
        "--max-wait",
        "0.5",
        "--write-delay",
        "2",
        "--no-reference",
        "--workdir",
        str(tmp_path / "work"),
        "--json",
        str(out),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["kills"] == 2 and r["kill_moments"] == {"training": 1, "checkpoint_write": 1}
    assert r["resumes"] == r["successful_resumes"] == 2
    assert r["damaged_checkpoints"] == 0
    # The mid-write kill left a temp file; the next start removed it, and nothing is left.
    assert r["partial_files_left_by_kills"] == 1 and r["partial_bytes_left_by_kills"] > 0
    assert r["partial_files_removed_at_start"] == 1
    assert r["leftover_partial_files"] == 0 and r["leftover_partial_bytes"] == 0
    assert 0 <= r["images_lost_per_kill"]["max"] <= 16
    assert r["final_nimg"] == 48
