"""Per-network Adam settings and micro-batches (``train.batch_gpu``) in the training step."""

import warnings

import pytest
import torch

from projected_gan import ExperimentSpec, build_from_spec
from projected_gan.spec.checks import SpecError
from projected_gan.training.assemble import describe_run
from tests.conftest import tiny_overrides


def _spec(out_dir, *extra: str) -> ExperimentSpec:
    # 32 px, FastGAN-lite ngf 8, random-init projector, no augmentation (it is random per call).
    return ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[
            *tiny_overrides(out_dir),
            "discriminator.feature_network.pretrained=false",
            "discriminator.augment=null",
            *extra,
        ],
    )


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _close(a: torch.Tensor, b: torch.Tensor, floor: float) -> bool:
    """Equal to 1e-5 relative, or within ``floor`` (fp32 rounding of the sums, see below)."""
    return float((a - b).norm()) <= 1e-5 * float(b.norm()) + floor


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.stack([t.norm() for t in tensors]).norm())


def _one_step(out_dir, batch_gpu: int | None, bn_eval: bool):
    extra = ["optim.eps=1.0"] + ([] if batch_gpu is None else [f"train.batch_gpu={batch_gpu}"])
    trainer = build_from_spec(_spec(out_dir, *extra))
    step = trainer.core
    if bn_eval:
        step.G.eval()
        step.D.eval()
    torch.manual_seed(123)
    reals = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    logs = step(reals, None, step_index=0, nimg=0)
    grads = {"G." + n: p.grad.clone() for n, p in step.G.named_parameters() if p.grad is not None}
    grads.update(
        {"D." + n: p.grad.clone() for n, p in step.D.named_parameters() if p.grad is not None}
    )
    weights = {"G." + n: p.detach().clone() for n, p in step.G.named_parameters()}
    weights.update({"D." + n: p.detach().clone() for n, p in step.D.named_parameters()})
    weights.update({"G_ema." + n: p.detach().clone() for n, p in step.G_ema.named_parameters()})
    return {k: float(v) for k, v in logs.items()}, grads, weights


def test_chunked_step_equals_the_full_batch_step_without_batchnorm_statistics(tmp_path):
    logs_full, grads_full, weights_full = _one_step(tmp_path, None, bn_eval=True)
    logs_chunk, grads_chunk, weights_chunk = _one_step(tmp_path, 1, bn_eval=True)
    assert grads_full.keys() == grads_chunk.keys()
    assert {k[:2] for k in grads_full} == {"G.", "D."}
    # fp32 sums over 4 samples at once or 4 chunks of 1 round differently, and how depends on
    # the CPU's kernels and thread count: a small bias gradient, formed by cancellation, came out
    # 1.9e-5 apart (relative) with 2 threads on an AMX Xeon. So each gradient may also be off by
    # 1e-6 of its network's whole gradient norm (a wrong chunk weight is off by O(1) of itself),
    # and each weight by lr times that: with optim.eps=1 (see _one_step) Adam's first step is
    # about -lr * grad, where it would otherwise be lr * sign(grad), flipped by any rounding.
    scale = {net: _norm([g for k, g in grads_full.items() if k.startswith(net)]) for net in "GD"}
    lr = _spec(tmp_path).optim.lr
    for key, g in grads_full.items():
        assert _close(grads_chunk[key], g, 1e-6 * scale[key[0]]), key
    for key, w in weights_full.items():
        assert _close(weights_chunk[key], w, 1e-6 * lr * scale[key[0]]), key
    # The logged losses stay the batch means.
    assert logs_chunk.keys() == logs_full.keys()
    for key, value in logs_full.items():
        assert logs_chunk[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_chunks_set_the_batchnorm_statistics_in_train_mode(tmp_path):
    # BatchNorm in train mode normalises over one chunk, so the gradients differ: the chunks
    # really are separate forward passes.
    _, grads_full, _ = _one_step(tmp_path, None, bn_eval=False)
    _, grads_chunk, _ = _one_step(tmp_path, 2, bn_eval=False)
    worst = max(_rel(grads_chunk[k], g) for k, g in grads_full.items())
    assert worst > 1e-3


def test_batch_gpu_must_divide_the_batch(tmp_path):
    with pytest.raises(SpecError) as err:
        _spec(tmp_path, "train.batch_gpu=3")
    assert err.value.field == "train.batch_gpu"
    # Divides the global batch 4 but not the per-process batch 2 of 2 processes.
    spec = _spec(tmp_path, "train.batch_gpu=4")
    with pytest.raises(SpecError) as err:
        describe_run(spec, (None, None, None, None), object(), world_size=2)
    assert err.value.field == "train.batch_gpu"
    described = describe_run(_spec(tmp_path, "train.batch_gpu=2"), (None,) * 4, object(), 2)
    assert described[1] == 2


def test_d_betas_and_lr_reach_the_discriminator_optimiser(tmp_path):
    trainer = build_from_spec(
        _spec(tmp_path, "optim.d_betas=[0.1, 0.95]", "optim.d_lr=0.0003", "optim.betas=[0.0, 0.9]")
    )
    d_group = trainer.core.d_opt.param_groups[0]
    g_group = trainer.core.g_opt.param_groups[0]
    assert d_group["betas"] == (0.1, 0.95) and d_group["lr"] == pytest.approx(3e-4)
    assert g_group["betas"] == (0.0, 0.9) and g_group["lr"] == pytest.approx(2e-4)


def test_g_betas_fall_back_and_are_validated(tmp_path):
    spec = _spec(tmp_path, "optim.g_betas=[0.5, 0.9]")
    assert spec.optim.generator_betas == (0.5, 0.9)
    assert spec.optim.discriminator_betas == spec.optim.betas
    with pytest.raises(SpecError) as err:
        _spec(tmp_path, "optim.d_betas=[0.0, 1.0]")
    assert err.value.field == "optim.d_betas"


@pytest.mark.parametrize(
    ("preset", "lr"),
    [
        ("fastgan_lite_256", 2e-4),
        ("fastgan_256", 2e-4),
        ("fastgan_lite_two_networks_256", 2e-4),
        ("stylegan2_256", 2e-3),
    ],
)
def test_official_presets_carry_the_official_optimiser_values(preset, lr):
    o = ExperimentSpec.preset(preset).optim
    # D_reg_interval = 16 in the official code: D's Adam scaled by mb_ratio 16/17.
    assert o.generator_lr == pytest.approx(lr) and o.generator_betas == (0.0, 0.99)
    assert o.discriminator_lr == pytest.approx(lr * 16 / 17, rel=1e-6)
    assert o.discriminator_betas[0] == 0.0
    assert o.discriminator_betas[1] == pytest.approx(0.99 ** (16 / 17), rel=1e-7)


def test_stylegan2_without_a_learning_rate_warns():
    with pytest.warns(UserWarning, match="0.002"):
        ExperimentSpec.load(overrides=["generator.name=stylegan2"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ExperimentSpec.load(overrides=["generator.name=stylegan2", "optim.lr=0.002"])
        ExperimentSpec.preset("stylegan2_256")
