"""Precision modes: resolution per device, fp32 features inside the discriminator, the trainer."""

from __future__ import annotations

import math

import pytest
import torch

import projected_gan
from projected_gan import ExperimentSpec, build_from_spec
from projected_gan.discriminators import ProjectedDiscriminator
from projected_gan.precision import AUTO_CUDA, PRECISIONS, resolve_precision
from projected_gan.projectors import CCMCSM, Projector
from projected_gan.spec import SpecError
from tests.conftest import tiny_overrides


@pytest.mark.parametrize(
    ("mode", "autocast", "fp32_features"),
    [
        ("fp32", False, False),
        ("tf32", False, False),
        ("bf16", True, False),
        ("bf16_fp32_features", True, True),
    ],
)
def test_modes_resolve_to_what_runs_in_bf16(mode, autocast, fp32_features):
    for device in ("cpu", "cuda"):
        p = resolve_precision(mode, device)
        assert (p.mode, p.autocast, p.fp32_features) == (mode, autocast, fp32_features)
        # TF32 exists only on CUDA, and by default everywhere but in fp32
        assert p.tf32 == (device == "cuda" and mode != "fp32")
        assert resolve_precision(mode, device, tf32=False).tf32 is False
        assert resolve_precision(mode, device, tf32=True).tf32 == (device == "cuda")


def test_auto_is_fp32_off_cuda_and_the_measured_choice_on_cuda():
    assert AUTO_CUDA in PRECISIONS and AUTO_CUDA != "auto"
    assert resolve_precision("auto", "cpu").mode == "fp32"
    assert resolve_precision("auto", torch.device("cuda", 0)).mode == AUTO_CUDA
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")


@pytest.fixture(scope="module")
def disc() -> ProjectedDiscriminator:
    net = projected_gan.create(
        "feature_networks",
        "tf_efficientnet_lite0",
        pretrained=False,
        resize="never",
        input_size=None,
    )
    projector = Projector(net, CCMCSM(net.channels, net.reductions, cout=16))
    return ProjectedDiscriminator(projector=projector, augment=None, img_resolution=64).eval()


def _features_seen(disc: ProjectedDiscriminator, x: torch.Tensor, autocast: bool):
    seen = []
    hook = disc.projector.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = disc(x)
    finally:
        hook.remove()
    return seen[0], logits


def test_fp32_features_keep_the_projector_out_of_autocast(disc):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    disc.fp32_features = False
    _, ref_logits = _features_seen(disc, x, autocast=False)
    low, low_logits = _features_seen(disc, x, autocast=True)
    assert all(f.dtype == torch.bfloat16 for f in low)
    try:
        disc.fp32_features = True
        # the G output arrives in bf16 under autocast; the projector still sees fp32
        kept, kept_logits = _features_seen(disc, x.bfloat16(), autocast=True)
        exact, _ = _features_seen(disc, x.bfloat16().float(), autocast=False)
    finally:
        disc.fp32_features = False
    assert all(f.dtype == torch.float32 for f in kept)
    for a, b in zip(kept, exact, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert kept_logits.dtype == torch.bfloat16  # the heads still follow the caller's autocast

    def rel(a: torch.Tensor) -> float:
        return float((a.float() - ref_logits).norm() / ref_logits.norm())

    assert rel(kept_logits) < rel(low_logits)


def test_fp32_features_pass_the_gradient_to_the_image(disc):
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).bfloat16().requires_grad_()
    disc.fp32_features = True
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            disc(x).float().mean().backward()
    finally:
        disc.fp32_features = False
    assert x.grad is not None and x.grad.dtype == torch.bfloat16
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def _spec(out_dir, *extra: str) -> ExperimentSpec:
    return ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[
            *tiny_overrides(out_dir),
            "discriminator.feature_network.pretrained=false",
            *extra,
        ],
    )


def test_trainer_applies_the_mode(tmp_path):
    trainer = build_from_spec(_spec(tmp_path, "train.precision=bf16_fp32_features"))
    assert trainer.core.precision.mode == "bf16_fp32_features"
    assert trainer.core.amp and trainer.D.fp32_features
    logs = trainer.step()
    assert all(math.isfinite(float(v)) for v in logs.values())
    fp32 = build_from_spec(_spec(tmp_path, "train.precision=auto"))  # CPU: fp32
    assert fp32.core.precision.mode == "fp32" and not fp32.core.amp and not fp32.D.fp32_features


def test_spec_accepts_the_modes_and_names_a_bad_one(tmp_path):
    for mode in PRECISIONS:
        assert _spec(tmp_path, f"train.precision={mode}").train.precision == mode
    with pytest.raises(SpecError, match=r"train\.precision"):
        _spec(tmp_path, "train.precision=fp16")
