"""Adaptive augmentation (StyleGAN2-ADA's controller): hand-computed updates, the per-sample
mask, no host syncs, the spec form, and tiny training runs that log p and resume it exactly."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from projected_gan import ExperimentSpec, build_from_spec, create_from_config, part_config
from projected_gan.augmentations import AdaptiveAugment, DiffAugment, build_augment
from projected_gan.checkpoint import find_checkpoints, load_checkpoint
from projected_gan.configs import spec_form
from projected_gan.errors import PartBuildError
from projected_gan.spec import SpecError
from projected_gan.training import Trainer, init_from
from tests.conftest import tiny_overrides
from tests.cuda_support import make_spec, no_host_sync


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, 16, 16, generator=gen(seed)) * 2 - 1


# ------------------------------------------------------------------------------ the controller
def test_all_positive_logits_raise_p_by_exactly_one_step():
    aug = AdaptiveAugment(speed_kimg=2.0)
    aug.accumulate(torch.full((4, 5), 3.0))
    r_t = aug.adjust(64)
    assert r_t.item() == 1.0
    assert torch.equal(aug.p, torch.tensor(64 / 2000, dtype=torch.float32))
    assert aug.sign_sum.item() == 0 and aug.count.item() == 0  # cleared for the next interval


def test_all_negative_logits_lower_p_and_clamp_at_zero():
    aug = AdaptiveAugment(speed_kimg=2.0, p=0.05)
    aug.accumulate(-torch.rand(4, 5) - 0.1)
    aug.adjust(64)
    assert torch.equal(aug.p, torch.tensor(0.05, dtype=torch.float32) - 64 / 2000)
    aug.accumulate(-torch.ones(4, 5))
    aug.adjust(64)
    assert aug.p.item() == 0.0  # 0.018 - 0.032 clamps to 0


def test_p_clamps_at_max_p():
    aug = AdaptiveAugment(speed_kimg=0.01, p=0.3, max_p=0.5)
    aug.accumulate(torch.ones(2, 3))
    aug.adjust(8)
    assert aug.p.item() == 0.5


def test_r_t_is_the_mean_sign_over_every_accumulated_logit():
    aug = AdaptiveAugment(target=0.5, speed_kimg=1.0, p=0.5)
    aug.accumulate(torch.tensor([[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0]]))  # signs 1 -1 1 -1 1 0
    aug.accumulate(torch.tensor([[1.0, 1.0]], dtype=torch.bfloat16))  # 1 1
    aug.accumulate(torch.tensor([float("nan")]))  # a bad step's logit: left out
    seen = []

    def reduce(stats):
        seen.append(stats.clone())
        stats.mul_(2)  # a sum over two ranks that saw the same: the ratio is unchanged

    r_t = aug.adjust(10, reduce=reduce)
    assert r_t.item() == pytest.approx(3 / 8)
    assert seen[0].tolist() == [3.0, 8.0]
    # r_t 0.375 < target 0.5: p falls by 10 / 1000
    assert aug.p.item() == pytest.approx(0.49, abs=1e-7)


def test_nothing_accumulated_leaves_p_alone():
    aug = AdaptiveAugment(p=0.25)
    assert aug.adjust(64).item() == 0.0
    assert aug.p.item() == 0.25


# ------------------------------------------------------------------------------ forward
def test_p_zero_is_the_identity_and_p_one_the_inner_augmentation():
    x = images()
    aug = AdaptiveAugment(policy="color,translation,cutout")
    assert torch.equal(aug(x, generator=gen(1)), x)
    aug.p.fill_(1.0)
    want = DiffAugment("color,translation,cutout")(x, generator=gen(1))
    assert torch.equal(aug(x, generator=gen(1)), want)


def test_the_mask_is_drawn_per_sample():
    x = images(16)
    aug = AdaptiveAugment(policy="color", p=0.5)
    out = aug(x, generator=gen(3))
    same = [torch.equal(out[i], x[i]) for i in range(16)]
    assert any(same) and not all(same)
    # The changed samples are exactly the inner augmentation's (drawn first, then the mask).
    inner = DiffAugment("color")(x, generator=gen(3))
    for i in range(16):
        assert torch.equal(out[i], x[i] if same[i] else inner[i])


def test_shape_dtype_layout_and_gradient_are_kept():
    x = images(4).to(memory_format=torch.channels_last).requires_grad_(True)
    aug = AdaptiveAugment(p=0.5)
    out = aug(x, generator=gen(2))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    half = aug(images(4).to(torch.bfloat16))
    assert half.dtype == torch.bfloat16


@contextmanager
def host_reads_fail():
    """Any read of a tensor's value on the host (what would sync with a GPU) raises."""

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host")

    names = ("item", "tolist", "__float__", "__int__", "__bool__")
    saved = {name: getattr(torch.Tensor, name) for name in names}
    for name in names:
        setattr(torch.Tensor, name, refuse)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


def test_forward_accumulate_and_adjust_never_read_values_on_the_host():
    aug = AdaptiveAugment(p=0.5, speed_kimg=1.0)
    x = images(4)
    with host_reads_fail():
        aug(x)
        aug.accumulate(torch.randn(4, 7))
        r_t = aug.adjust(16)
    assert r_t.dim() == 0 and r_t.dtype == torch.float32


# ------------------------------------------------------------------------------ configuration
def test_the_spec_form_round_trips():
    form = {"name": "adaptive", "policy": "color,translation,cutout", "target": 0.6}
    aug = build_augment({**form, "speed_kimg": 500})
    assert isinstance(aug, AdaptiveAugment) and isinstance(aug.inner, DiffAugment)
    config = part_config(aug)
    form = spec_form(config)
    assert form["name"] == "adaptive" and form["speed_kimg"] == 500 and form["target"] == 0.6
    again = create_from_config(config)
    assert part_config(again) == config
    again.p.fill_(0.7)
    aug.load_state_dict(again.state_dict())  # p is state: a checkpoint carries it
    assert aug.p.item() == pytest.approx(0.7)
    assert set(aug.state_dict()) == {"p", "sign_sum", "count"}


def test_augment_takes_any_registered_augmentation():
    aug = AdaptiveAugment(augment={"name": "diffaugment", "policy": "translation"})
    assert aug.inner.policy == "translation"
    assert AdaptiveAugment(augment="cutout").inner.policy == "cutout"
    with pytest.raises(PartBuildError) as info:
        AdaptiveAugment(augment={"name": "diffaugment", "policy": "colour"})
    assert info.value.field == "augment.policy"
    with pytest.raises(PartBuildError, match="cannot wrap") as info:
        AdaptiveAugment(augment="adaptive")
    assert info.value.field == "augment"
    with pytest.raises(PartBuildError, match="not both") as info:
        AdaptiveAugment(policy="color", augment="diffaugment")
    assert info.value.field == "augment"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target": 1.5}, "target"),
        ({"target": float("nan")}, "target"),
        ({"speed_kimg": 0}, "speed_kimg"),
        ({"interval": 0}, "interval"),
        ({"interval": 2.5}, "interval"),
        ({"p": -0.1}, "p"),
        ({"p": 0.6, "max_p": 0.5}, "p"),
        ({"max_p": 1.5}, "max_p"),
        ({"policy": "colour"}, "policy"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, field):
    with pytest.raises(PartBuildError) as info:
        AdaptiveAugment(**kwargs)
    assert info.value.field == field
    assert field in str(info.value) or field == "policy"


def test_a_bad_value_in_a_spec_names_the_spec_field(tmp_path):
    overrides = [
        *tiny_overrides(tmp_path),
        "discriminator.augment.name=adaptive",
        "discriminator.augment.target=1.5",
    ]
    with pytest.raises(SpecError, match=r"discriminator\.augment\.target"):
        ExperimentSpec.load(preset="minimal_cpu", overrides=overrides)


# ------------------------------------------------------------------------------ training
def adaptive_spec(out_dir) -> ExperimentSpec:
    overrides = [
        *tiny_overrides(out_dir),
        # 2 steps of 4 images, a tick and a snapshot after each, no grid but the last
        *("train.kimg=0.008", "train.tick=0.004", "train.snapshot_every=0.004"),
        "train.sample_every=1000",
        "discriminator.augment.name=adaptive",  # keeps the default spec's policy
        "discriminator.augment.p=0.5",  # so p can move either way
        # p moves once, at step 2: by 2 steps x 4 images / 20 images = 0.4. The snapshot after
        # step 1 holds half-filled accumulators.
        "discriminator.augment.interval=2",
        "discriminator.augment.speed_kimg=0.02",
    ]
    return ExperimentSpec.load(preset="minimal_cpu", overrides=overrides)


def state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Everything that must continue exactly: D (with p and the accumulators), G, G_ema."""
    out = {}
    for name, module in (("D", trainer.D), ("G", trainer.G), ("G_ema", trainer.G_ema)):
        out.update({f"{name}.{k}": v.detach().clone() for k, v in module.state_dict().items()})
    return out


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory):
    """One tiny run (one training costs most of this file's time): its folder and end state."""
    trainer = build_from_spec(adaptive_spec(tmp_path_factory.mktemp("adaptive")))
    run = trainer.fit(progress=False)
    return run, state(trainer)


def test_training_moves_p_and_logs_it(adaptive_run):
    run, end = adaptive_run
    ticks = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    ps = [t["augment_p"] for t in ticks]
    assert ps[0] == 0.5  # step 1: no adjustment yet
    assert ps[1] in (pytest.approx(0.9), pytest.approx(0.1))  # step 2: one move of 0.4
    assert end["D.augment.p"].item() == pytest.approx(ps[1])
    recorded = ExperimentSpec.from_file(run / "spec.yaml").discriminator.augment
    assert recorded.name == "adaptive"
    assert recorded.kwargs["speed_kimg"] == 0.02 and recorded.kwargs["interval"] == 2
    assert recorded.kwargs["policy"] == "color,translation,cutout"
    ckpt = load_checkpoint(find_checkpoints(run)[0])
    assert torch.equal(ckpt.models["D"]["augment.p"], end["D.augment.p"])


def test_resume_continues_p_and_its_statistics_exactly(adaptive_run, tmp_path):
    run, end = adaptive_run
    copy = Path(shutil.copytree(run, tmp_path / run.name))
    newest, middle = find_checkpoints(copy)[:2]  # after step 2, after step 1
    assert load_checkpoint(middle).meta["step"] == 1
    newest.unlink()  # so resume starts from the middle of the run
    resumed = Trainer.resume(copy)
    aug = resumed.D.augment
    assert aug.count.item() > 0 and aug.p.item() == 0.5  # a step of statistics, no move yet
    resumed.step()
    got = state(resumed)
    assert end.keys() == got.keys()
    different = [k for k in end if not torch.equal(end[k], got[k])]
    assert not different, f"not bitwise equal after resume: {different[:5]}"


def test_init_copies_weights_but_p_starts_again(adaptive_run, tmp_path):
    run, end = adaptive_run
    assert end["D.augment.p"].item() != 0.5  # the source run moved p
    trainer = build_from_spec(adaptive_spec(tmp_path))
    report = init_from(trainer, find_checkpoints(run)[0], verbose=False)
    assert report.modules["D"].copied  # D's heads came from the source
    aug = trainer.D.augment
    assert aug.p.item() == 0.5 and aug.count.item() == 0 and aug.sign_sum.item() == 0


# ------------------------------------------------------------------------------ GPU
@pytest.mark.cuda
def test_adaptive_steps_never_wait_for_the_gpu(tmp_path):
    overrides = ("discriminator.augment.name=adaptive", "discriminator.augment.interval=1")
    trainer = build_from_spec(make_spec(tmp_path, *overrides))
    trainer.step()  # warm-up: cuDNN autotuning, allocator growth
    with no_host_sync():
        logs = [trainer.step() for _ in range(3)]
    assert all(s["augment_p"].device == trainer.device for s in logs)
