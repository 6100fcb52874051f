"""The training-throughput benchmark runs end to end on CPU and writes the promised JSON."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
TINY = [
    "--preset",
    "minimal_cpu",
    "--device",
    "cpu",
    "--resolution",
    "32",
    "--batch",
    "4",
    "--set",
    "generator.ngf=8",
    "--set",
    "discriminator.feature_network.input_size=64",
    "--random-data",
    "--threads",
    "1",  # robust on a busy shared CPU
]


def _load_script():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_run_with_baseline_writes_json(tmp_path):
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(SCRIPT), *TINY, "--iters", "2", "--baseline", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "img/s" in proc.stdout and "speed-up" in proc.stdout
    assert "DiffAugment:" in proc.stdout and "ms/img" in proc.stdout

    r = json.loads(out.read_text())
    keys = ("img_per_s", "baseline_img_per_s", "peak_mem_bytes", "speedup", "flops_per_img")
    for key in (*keys, "augment_s_per_img"):
        assert r[key] > 0, key
    assert r["device"] == "cpu" and r["torch"] and r["date"]
    assert r["settings"]["batch"] == 4 and r["settings"]["resolution"] == 32
    assert r["baseline_settings"] == {**r["settings"], "channels_last": False, "compile": False}
    assert r["speedup"] == pytest.approx(r["img_per_s"] / r["baseline_img_per_s"])
    assert r["tflops"] == pytest.approx(r["flops_per_img"] * r["img_per_s"] / 1e12)
    assert r["s_per_kimg"] == pytest.approx(1000 / r["img_per_s"])
    assert len(r["run"]["step_s_each"]) == 2
    assert 0 < r["startup_s"] < 120
    assert r["spec"]["train"]["batch"] == 4 and r["spec"]["data"]["resolution"] == 32


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--iters", "0"], "--iters"),
        (["--warmup", "0"], "--warmup"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_arguments_name_the_flag(argv, names, capsys):
    bench = _load_script()
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert names in capsys.readouterr().err


def test_random_data_replaces_files_only_inside_the_block():
    from projected_gan.training import assemble
    from projected_gan.training.spec import ExperimentSpec

    bench = _load_script()
    spec = ExperimentSpec.load(preset="minimal_cpu", overrides=["data.resolution=32"])
    original = assemble.load_dataset
    with bench.random_dataset(spec):
        ds = assemble.load_dataset(spec)
        assert ds.images.shape[1:] == (3, 32, 32) and ds.source == "<random>"
        assert len(ds) >= spec.train.batch
    assert assemble.load_dataset is original


def test_a_measured_trainer_is_freed_before_the_next_one_is_built():
    """The baseline's peak memory must not include the first configuration's weights."""
    import weakref

    import torch

    bench = _load_script()
    args = bench.parse_args(TINY)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as --threads 1: robust on a busy shared CPU
    try:
        trainer = bench.build_trainer(bench.make_spec(args), random_data=True)
        result = bench.measure(trainer, iters=1, warmup=1, t_start=0.0)
        assert result["img_per_s"] > 0 and result["startup_s"] > 0
        assert bench.count_step_flops(trainer) > 0
        alive = weakref.ref(trainer)
        device = trainer.device
        del trainer
        bench.release(device, compiled=False)
        assert alive() is None
    finally:
        torch.set_num_threads(threads)
