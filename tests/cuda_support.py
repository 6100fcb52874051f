"""Helpers of the ``cuda`` tests (tests/test_cuda.py): the device, the spec, reports, checks.

``PROJECTED_GAN_CUDA_TESTS_ON_CPU=1`` switches the tests to the CPU at 32 px (a rehearsal of
their logic, see tests/test_cuda.py); ``$PROJECTED_GAN_CUDA_REPORT`` collects their findings.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from projected_gan import ExperimentSpec
from tests.conftest import tiny_overrides

REHEARSAL_ENV = "PROJECTED_GAN_CUDA_TESTS_ON_CPU"
REPORT_ENV = "PROJECTED_GAN_CUDA_REPORT"
ON_GPU = os.environ.get(REHEARSAL_ENV) != "1"
DEVICE = "cuda" if ON_GPU else "cpu"
# Two runs of one configuration that may differ by bf16 rounding (and kernel choice): a loss of
# order 1 then agrees to ~1e-2.
BF16_TOL = 5e-2


def make_spec(out_dir: Path, *extra: str) -> ExperimentSpec:
    if not ON_GPU:
        overrides = [*tiny_overrides(out_dir), "train.deterministic=false", *extra]
        return ExperimentSpec.load(preset="minimal_cpu", overrides=overrides)
    overrides = [
        "data.max_images=32",
        "data.mirror=true",
        "train.batch=8",
        "train.device=cuda",
        "train.kimg=0.032",
        "train.tick=0.016",
        "train.sample_every=1000",
        "train.snapshot_every=1000",
        "train.metrics_every=1000",
        "metrics.names=[]",
        f"output.dir={out_dir}",
        *extra,
    ]
    return ExperimentSpec.load(preset="fastgan_lite_256", overrides=overrides)


def losses(logs: dict[str, torch.Tensor]) -> list[float]:
    return [float(logs[k]) for k in ("loss_g", "loss_d_real", "loss_d_fake")]


def copies(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def moved(before: list[torch.Tensor], params) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, params))


def mean_abs_diff(a, b) -> float:
    pairs = list(zip(a, b))
    total = sum((x.detach().float() - y.detach().float()).abs().sum().item() for x, y in pairs)
    return total / sum(x.numel() for x, _ in pairs)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(kind: str, **record) -> None:
    """Print a finding; also append it to ``$PROJECTED_GAN_CUDA_REPORT`` (gpu_check collects it)."""
    line = json.dumps({"kind": kind, **record}, default=str)
    print(line)
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    """build_from_spec sets process-wide switches (TF32, cuDNN, determinism): undo them."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2:4]
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[4:6]
    if ON_GPU:
        torch.cuda.empty_cache()


@contextlib.contextmanager
def no_host_sync():
    """Fail if the block makes the host wait for the GPU (torch's sync debug mode)."""
    if not ON_GPU:
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [
        f"{w.filename}:{w.lineno}: {w.message}" for w in caught if "synchroniz" in str(w.message)
    ]
    assert not syncs, "host-device synchronisations in the hot loop:\n" + "\n".join(syncs)
