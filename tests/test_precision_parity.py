"""benchmarks/precision_parity.py runs end to end on tiny sizes and writes its JSON."""

import json
import math
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_overrides

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import precision_parity


@pytest.mark.slow
def test_precision_parity_compares_modes_at_init_and_over_training(tmp_path, capsys):
    skip = ("metrics.", "train.metrics_every", "train.kimg", "output.dir", "data.mirror")
    sets = [o for o in tiny_overrides(tmp_path) if not o.startswith(skip)]
    # the cost is the FD network: 64 reals (no mirror) and 16 fakes per evaluation
    sets += ["data.mirror=false", "metrics.num_images=16"]
    sets += ["discriminator.feature_network.pretrained=false"]
    args = ["--modes", "fp32,bf16", "--seeds", "0", "--kimg", "0.008", "--every", "0.008"]
    args += ["--device", "cpu", "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "p.json")]
    args += [a for o in sets for a in ("--set", o)]
    record = precision_parity.main(args)

    init = record["init"]
    assert set(init) == {"bf16", *precision_parity.DIAGNOSTICS}
    bf16 = init["bf16"][0]
    assert 0 < bf16["logits_fake_rel"] < 1 and 0 < bf16["grad_G_cos"] <= 1
    # the same mode on both sides would be exactly fp32: the diagnostics differ from it
    assert init["diag: fp32 G, bf16 D"][0]["fakes_rel"] == 0
    assert init["diag: bf16 G, fp32 D"][0]["fakes_rel"] > 0

    curves = record["curves"]
    assert [r["kimg"] for r in curves["fp32"][0]] == [0.0, 0.008]
    assert [r["kimg"] for r in curves["bf16"][0]] == [0.0, 0.008]
    # kimg 0 is evaluated once per seed (every mode starts from the same G_ema)
    assert curves["bf16"][0][0]["fd"] == curves["fp32"][0][0]["fd"]
    assert curves["bf16"][0][0]["eval_seconds"] < 0.5  # reused, not computed
    assert curves["bf16"][0][1]["fd"] != curves["fp32"][0][1]["fd"]
    summary = record["summary"]
    assert summary["fp32"]["final"][0] == curves["fp32"][0][-1]["fd"]
    assert math.isfinite(summary["bf16"]["gap_to_fp32_mean"])
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["summary"]["bf16"]["final"]["0"] == summary["bf16"]["final"][0]
    out = capsys.readouterr().out
    assert "at initialisation" in out and "final fd per mode" in out
