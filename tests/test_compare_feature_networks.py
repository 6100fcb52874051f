"""benchmarks/compare_feature_networks.py: the summary over seeds and its argument checks."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import compare_feature_networks as cfn


def test_summary_is_mean_and_sample_std_over_seeds_per_kimg():
    curves = {
        "a": {
            0: [{"kimg": 0.0, "fd": 10.0, "train_s": 0.0}, {"kimg": 1.0, "fd": 4.0, "train_s": 8}],
            1: [{"kimg": 0.0, "fd": 12.0, "train_s": 0.0}, {"kimg": 1.0, "fd": 6.0, "train_s": 10}],
        },
        "b": {0: [{"kimg": 1.0, "fd": 3.0, "train_s": 20}]},
    }
    rows = cfn.summarise(curves, "fd")
    assert [(r["setup"], r["kimg"]) for r in rows] == [("a", 0.0), ("a", 1.0), ("b", 1.0)]
    assert rows[1]["mean"] == 5.0 and rows[1]["std"] == pytest.approx(math.sqrt(2))
    assert rows[1]["per_seed"] == {0: 4.0, 1: 6.0} and rows[1]["train_s"] == 9
    assert math.isnan(rows[2]["std"])  # one seed: no spread


def test_setups_default_to_lite0_against_lite0_plus_lite1_and_bad_ones_are_named(capsys):
    args = cfn.parse_args(["--kimg", "1", "--every", "1"])
    assert [s.partition("=")[0] for s in args.setup] == ["lite0", "lite0+lite1"]
    with pytest.raises(SystemExit):
        cfn.parse_args(["--kimg", "1", "--every", "1", "--setup", "no_equals_sign"])
    assert "LABEL=VALUE" in capsys.readouterr().err
