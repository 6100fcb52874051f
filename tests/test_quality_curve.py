import json
import math
import sys
from pathlib import Path

from tests.conftest import tiny_overrides

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import quality_curve


def test_quality_curve_prints_and_writes_fd_against_kimg_and_seconds(tmp_path, capsys):
    skip = ("metrics.", "train.metrics_every", "train.kimg")
    sets = [o for o in tiny_overrides(tmp_path / "runs") if not o.startswith(skip)]
    args = ["--kimg", "0.016", "--every", "0.008", "--json", str(tmp_path / "c.json")]
    args += [a for o in [*sets, "metrics.num_images=16"] for a in ("--set", o)]
    rows = quality_curve.main(args)
    assert [r["kimg"] for r in rows] == [0.0, 0.008, 0.016]
    assert all(math.isfinite(r["fd"]) and r["fd"] > 0 for r in rows)
    assert rows[0]["train_s"] <= rows[1]["train_s"] <= rows[2]["train_s"]
    out = capsys.readouterr().out
    assert "kimg" in out and "train_s" in out and "fd" in out
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["curve"] == rows
