"""A small fixed-seed sample of benchmarks/fuzz_readers.py: mutated files of every kind, read
by the command line in capped children, end in a clean exit 2 or load; never a traceback or a
timeout, and no file under 1 MB costs 1 GiB of RSS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_fixed_seed_sample_has_no_tracebacks_or_timeouts(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fuzz_readers.py"), "--count", "12",
         "--seed", "5", "--timeout", "30", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert len(rows) == 12 and {r["kind"] for r in rows} >= {"pickle", "checkpoint", "export"}
    bad = [r for r in rows if r["outcome"] not in ("exit2", "loaded")]
    assert not bad, (bad, proc.stdout[-3000:])
    assert all(r["rss"] < 2**30 for r in rows if r["bytes"] < 2**20)
    assert "| all | 12 |" in proc.stdout
