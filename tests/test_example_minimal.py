"""``examples/train_minimal.py``: the overrides it puts on ``minimal_cpu`` per machine."""

import importlib.util
from pathlib import Path

import pytest

from projected_gan import ExperimentSpec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_minimal.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("train_minimal", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train(example, sets=(), kimg=None, **machine):
    overrides = example.demo_overrides(list(sets), kimg, **machine)
    return ExperimentSpec.load(preset="minimal_cpu", overrides=overrides).train


def test_bf16_only_on_a_cpu_with_native_bf16(example):
    assert _train(example, cuda=False, native_bf16=True).precision == "bf16"
    assert _train(example, cuda=False, native_bf16=False).precision == "auto"  # fp32 on a CPU
    gpu = _train(example, cuda=True, native_bf16=True)
    assert gpu.precision == "auto" and gpu.kimg == 200 and gpu.batch == 64


def test_the_users_set_and_kimg_win(example):
    train = _train(example, ["train.precision=fp32"], cuda=False, native_bf16=True)
    assert train.precision == "fp32"
    train = _train(example, ["train.batch=8"], kimg=1.5, cuda=True, native_bf16=False)
    assert (train.kimg, train.batch) == (1.5, 8)  # --kimg skips the GPU-scale recipe
    assert _train(example, ["train.kimg=3"], cuda=False, native_bf16=False).kimg == 3
