"""benchmarks/transfer.py: the class split it trains on and the paired differences it reports."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import transfer  # a script, not a package


def test_split_holds_out_one_class_whole(tmp_path):
    pretrain, target, classes = transfer.split_flowers(tmp_path, "tulips")
    assert classes == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert sorted(p.name for p in pretrain.iterdir()) == classes[:4]
    assert [p.name for p in target.iterdir()] == ["tulips"]
    assert len(list((target / "tulips").iterdir())) == 100
    assert sum(1 for _ in pretrain.rglob("*.jpg")) == 400
    with pytest.raises(SystemExit, match="not a class"):
        transfer.split_flowers(tmp_path / "again", "orchids")


def test_paired_differences_are_per_seed_at_equal_kimg():
    curves = {
        "finetune": {
            0: [{"kimg": 0.0, "fd": 100.0}, {"kimg": 1.0, "fd": 50.0}],
            1: [{"kimg": 0.0, "fd": 110.0}, {"kimg": 1.0, "fd": 70.0}],
        },
        "scratch": {
            0: [{"kimg": 0.0, "fd": 300.0}, {"kimg": 1.0, "fd": 80.0}],
            1: [{"kimg": 0.0, "fd": 290.0}],  # seed 1 has no kimg-1 point: left out there
        },
    }
    rows = transfer.paired(curves)
    assert [r["kimg"] for r in rows] == [0.0, 1.0]
    assert rows[0]["per_seed"] == {0: -200.0, 1: -180.0} and rows[0]["mean"] == -190.0
    assert rows[0]["std"] == pytest.approx(math.sqrt(200))
    assert rows[1]["per_seed"] == {0: -30.0} and math.isnan(rows[1]["std"])
