"""Diffusion-GAN noise (``diffusion``): the schedule and T by hand, the timestep distribution,
the forward-diffusion formula, ADA's controller moving T, where a ProjectedDiscriminator puts the
noise, and one tiny training run that logs p and T and resumes them exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from projected_gan import (
    ExperimentSpec,
    ProjectedDiscriminator,
    build_from_spec,
    create_from_config,
    part_config,
)
from projected_gan.augmentations import (
    AdaptiveAugment,
    DiffusionAugment,
    OverfittingController,
    build_augment,
)
from projected_gan.checkpoint import find_checkpoints
from projected_gan.errors import PartBuildError
from projected_gan.projectors import FeatureNetwork
from projected_gan.training import Trainer
from tests.conftest import tiny_overrides
from tests.cuda_support import make_spec, no_host_sync
from tests.test_adaptive_augment import host_reads_fail

CPU = torch.device("cpu")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def maps(b: int = 4, c: int = 6, side: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, side, side, generator=gen(seed))


def small(**kwargs) -> DiffusionAugment:
    """T = 3 whatever p, betas 0.1, 0.2, 0.3: abar = 1, 0.9, 0.72, 0.504."""
    return DiffusionAugment(t_min=3, t_max=3, beta_start=0.1, beta_end=0.3, **kwargs)


# ------------------------------------------------------------------------------ schedule and T
def test_alphas_bar_by_hand():
    torch.testing.assert_close(small().alphas_bar(), torch.tensor([1.0, 0.9, 0.72, 0.504]))
    # T = 3 of t_max = 5 (p = 0): past T the betas stay at beta_end (never drawn).
    aug = DiffusionAugment(t_min=3, t_max=5, beta_start=0.1, beta_end=0.3)
    want = [1.0, 0.9, 0.72, 0.504, 0.504 * 0.7, 0.504 * 0.49]
    torch.testing.assert_close(aug.alphas_bar(), torch.tensor(want))
    # p = 1: T = 5 stretches the schedule to 0.1, 0.15, 0.2, 0.25, 0.3.
    aug.p.fill_(1.0)
    want = [1.0, 0.9, 0.9 * 0.85, 0.9 * 0.85 * 0.8, 0.9 * 0.85 * 0.8 * 0.75]
    torch.testing.assert_close(aug.alphas_bar()[:5], torch.tensor(want))


@pytest.mark.parametrize(("p", "T"), [(0.0, 5), (1.0, 500), (0.5, 253), (0.25, 129)])
def test_T_follows_p(p, T):
    aug = DiffusionAugment(p=p)  # 0.5: 5 + round(247.5) = 5 + 248 (half to even, as Python)
    assert aug.T.dim() == 0 and aug.T.dtype == torch.int64
    assert aug.T.item() == T


# ------------------------------------------------------------------------------ timesteps
def test_timesteps_follow_t_minus_1_and_the_diffused_share():
    aug = DiffusionAugment(t_min=10, t_max=10, p=0.1)  # round(6.4) = 6 of 64 slots diffused
    t = aug.timesteps((1000, 1000), CPU, gen(1))
    assert t.dtype == torch.int64 and t.shape == (1000, 1000)
    assert (t == 0).float().mean().item() == pytest.approx(1 - 6 / 64, abs=0.002)
    drawn = t[t > 0]
    assert drawn.min().item() == 2 and drawn.max().item() == 10  # t = 1 has weight 0
    share = torch.bincount(drawn, minlength=11).float() / drawn.numel()
    want = torch.tensor([0.0, 0.0, *[(k - 1) / 45 for k in range(2, 11)]])
    # ~94k draws: sigma < 0.0014 per bin, the tolerance is over 3.5 sigma
    torch.testing.assert_close(share, want, atol=0.005, rtol=0)


def test_the_diffused_share_is_capped_at_max_diffused():
    aug = DiffusionAugment(p=0.9)  # round(57.6) = 58 slots, capped at 48 of 64
    assert aug.diffused_share().item() == 0.75
    t = aug.timesteps((100_000,), CPU, gen(2))
    assert (t == 0).float().mean().item() == pytest.approx(0.25, abs=0.005)
    assert t.max().item() <= aug.T.item()
    # Large t favoured: P(t <= T/2) = (T/2)(T/2 - 1) / (T (T - 1)), about a quarter.
    T = aug.T.item()
    half = T // 2
    low = ((t > 0) & (t <= half)).float().sum() / (t > 0).float().sum()
    assert low.item() == pytest.approx(half * (half - 1) / (T * (T - 1)), abs=0.01)
    every = DiffusionAugment(p=1.0, max_diffused=1.0).timesteps((10_000,), CPU, gen(3))
    assert (every >= 2).all()


def test_p_zero_leaves_the_input_exactly():
    x = maps()
    aug = DiffusionAugment(policy="", where="images")
    assert (aug.timesteps((4, 6), CPU, gen()) == 0).all()
    assert torch.equal(aug.noise(x, gen(4)), x)
    assert torch.equal(aug(x, gen(4)), x)


# ------------------------------------------------------------------------------ the formula
def test_a_fixed_t_gives_the_forward_diffusion_formula():
    x = maps(2, 3)
    t = torch.tensor([[0, 1, 2], [3, 3, 0]])
    aug = small(noise_std=0.5)
    eps = torch.randn(x.shape, generator=gen(5))
    out = aug.noise(x, gen(5), t=t)
    abar = torch.tensor([1.0, 0.9, 0.72, 0.504])[t].view(2, 3, 1, 1)
    want = abar.sqrt() * x + (1 - abar).sqrt() * 0.5 * eps
    torch.testing.assert_close(out, want)
    assert torch.equal(out[0, 0], x[0, 0]) and torch.equal(out[1, 2], x[1, 2])  # t = 0


def test_the_drawn_noise_is_timesteps_then_eps_from_the_generator():
    x = maps()
    aug = DiffusionAugment(p=1.0)
    g = gen(6)
    t = aug.timesteps((4, 6), CPU, g)
    eps = torch.randn(x.shape, generator=g)
    abar = aug.alphas_bar()[t].view(4, 6, 1, 1)
    want = abar.sqrt() * x + (1 - abar).sqrt() * 0.5 * eps
    torch.testing.assert_close(aug.noise(x, gen(6)), want)
    assert not torch.equal(aug.noise(x, gen(6)), x)


def test_shape_dtype_layout_gradient_and_no_host_reads():
    aug = DiffusionAugment(p=1.0)
    x = maps().to(memory_format=torch.channels_last).requires_grad_(True)
    with host_reads_fail():
        out = aug.noise(x)
        aug.accumulate(torch.randn(4, 7))
        aug.adjust(16)
        T = aug.T
    assert out.shape == x.shape and out.dtype == x.dtype and T.dim() == 0
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert aug.noise(maps().to(torch.bfloat16)).dtype == torch.bfloat16


# ------------------------------------------------------------------------------ the controller
def test_the_controller_moves_p_like_ada_and_T_follows():
    aug = DiffusionAugment(speed_kimg=0.1)
    assert isinstance(aug, OverfittingController)
    aug.accumulate(torch.full((4, 5), 2.0))
    assert aug.adjust(40).item() == 1.0
    assert torch.equal(aug.p, torch.tensor(40 / 100, dtype=torch.float32))
    assert aug.T.item() == 5 + 198
    aug.accumulate(-torch.ones(4, 5))
    aug.adjust(100)  # 0.4 - 1.0 clamps to 0
    assert aug.p.item() == 0.0 and aug.T.item() == 5


def test_state_dict_and_spec_form_round_trip():
    aug = build_augment({"name": "diffusion", "where": "projected", "speed_kimg": 0.5})
    assert isinstance(aug, DiffusionAugment) and aug.feature_noise_stage == "projected"
    again = create_from_config(part_config(aug))
    assert part_config(again) == part_config(aug)
    again.p.fill_(0.3)
    aug.load_state_dict(again.state_dict())  # p is state: checkpoints carry T with it
    assert aug.p.item() == pytest.approx(0.3) and aug.T.item() == 5 + 148
    assert set(aug.state_dict()) == {"p", "sign_sum", "count"}


# ------------------------------------------------------------------------------ in a discriminator
class Tiny(FeatureNetwork):
    """Two strided convs (maps at strides 2 and 4): a cheap stand-in for a pretrained network."""

    def __init__(self) -> None:
        super().__init__(resize="never", input_size=None)
        self.a, self.b = nn.Conv2d(3, 4, 2, stride=2), nn.Conv2d(4, 6, 2, stride=2)
        self.channels, self.reductions = (4, 6), (2, 4)
        self.freeze()

    def forward_features(self, x):
        first = self.a(x)
        return [first, self.b(first)]


def tiny_d(augment: nn.Module) -> ProjectedDiscriminator:
    torch.manual_seed(0)
    return ProjectedDiscriminator(
        feature_network=[Tiny(), Tiny()],  # every network gets the noise
        projection_head={"name": "ccm", "cout": 8, "expand": False},
        augment=augment,
        img_resolution=32,
    ).eval()


@pytest.mark.parametrize("where", ["features", "projected", "images"])
def test_the_noise_goes_where_asked_for_every_network(where):
    aug = DiffusionAugment(policy="", where=where, p=1.0)
    D = tiny_d(aug)
    x = torch.rand(2, 3, 32, 32, generator=gen(7)) * 2 - 1

    def noise(ms: list[torch.Tensor], here: str) -> list[torch.Tensor]:
        return [aug.noise(m) for m in ms] if where == here else ms

    with torch.no_grad():
        torch.manual_seed(8)
        got = D(x)
        # By hand, drawing from the global RNG in the same order: network by network.
        torch.manual_seed(8)
        seen = aug.noise(x) if where == "images" else x
        feats = [p.head(noise(p.feature_network(seen), "features")) for p in D.projectors]
        feats = [noise(f, "projected") for f in feats]
        want = torch.cat([d(f, None) for d, f in zip(D.discriminators, feats)], dim=-1)
        plain = torch.cat([d(p(x), None) for p, d in zip(D.projectors, D.discriminators)], dim=-1)
        aug.p.zero_()
        torch.manual_seed(8)
        off = D(x)
    assert torch.equal(got, want)
    assert not torch.allclose(got, plain)
    assert torch.equal(off, plain)  # p = 0: no noise anywhere


def test_the_g_step_gets_a_gradient_through_the_noisy_features():
    D = tiny_d(DiffusionAugment(p=1.0))
    x = (torch.rand(2, 3, 32, 32, generator=gen(9)) * 2 - 1).requires_grad_(True)
    D(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        assert not D(x.detach()).requires_grad


# ------------------------------------------------------------------------------ arguments
def test_augment_takes_any_augmentation_but_no_controller():
    aug = DiffusionAugment(augment={"name": "diffaugment", "policy": "cutout"})
    assert aug.inner.policy == "cutout"
    for inner in ("diffusion", "adaptive"):
        with pytest.raises(PartBuildError, match="cannot wrap") as info:
            DiffusionAugment(augment=inner)
        assert info.value.field == "augment"
    with pytest.raises(PartBuildError, match="cannot wrap"):
        AdaptiveAugment(augment={"name": "diffusion", "where": "images"})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"where": "logits"}, "where"),
        ({"t_min": 1}, "t_min"),
        ({"t_min": 5.0}, "t_min"),
        ({"t_min": 10, "t_max": 9}, "t_max"),
        ({"beta_start": 0.0}, "beta_start"),
        ({"beta_start": 0.02}, "beta_start"),  # above beta_end
        ({"beta_end": 1.0}, "beta_end"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"noise_std": float("inf")}, "noise_std"),
        ({"max_diffused": 1.5}, "max_diffused"),
        ({"target": 2.0}, "target"),
        ({"speed_kimg": 0}, "speed_kimg"),
        ({"interval": 0}, "interval"),
        ({"p": 0.5, "max_p": 0.2}, "p"),
        ({"policy": "colour"}, "policy"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, field):
    with pytest.raises(PartBuildError) as info:
        DiffusionAugment(**kwargs)
    assert info.value.field == field
    assert field in str(info.value) or field == "policy"


# ------------------------------------------------------------------------------ training
def diffusion_spec(out_dir) -> ExperimentSpec:
    overrides = [
        *tiny_overrides(out_dir),
        # 2 steps of 4 images, a tick and a snapshot after each, no grid but the last
        *("train.kimg=0.008", "train.tick=0.004", "train.snapshot_every=0.004"),
        "train.sample_every=1000",
        # p from 0.5 so it moves either way: once, at step 2, by 8 / 20 = 0.4
        "discriminator.augment={name: diffusion, p: 0.5, interval: 2, speed_kimg: 0.02}",
    ]
    return ExperimentSpec.load(preset="minimal_cpu", overrides=overrides)


def snapshot(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in (("D", trainer.D), ("G", trainer.G), ("G_ema", trainer.G_ema)):
        out.update({f"{name}.{k}": v.detach().clone() for k, v in module.state_dict().items()})
    return out


def test_a_tiny_run_moves_p_logs_T_and_resumes_exactly(tmp_path):
    trainer = build_from_spec(diffusion_spec(tmp_path / "run"))
    aug = trainer.D.augment
    assert isinstance(aug, DiffusionAugment) and aug.where == "features"
    assert aug.inner.policy == "color,translation,cutout"
    run = trainer.fit(progress=False)
    end = snapshot(trainer)
    ticks = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert ticks[0]["augment_p"] == 0.5 and ticks[0]["augment_T"] == 5 + 248
    p = ticks[1]["augment_p"]
    assert p in (pytest.approx(0.9), pytest.approx(0.1))
    assert abs(ticks[1]["augment_T"] - (5 + p * 495)) <= 0.5 + 1e-3  # T = 5 + round(495 p)

    copy = Path(shutil.copytree(run, tmp_path / "copy"))
    find_checkpoints(copy)[0].unlink()  # resume after step 1, before p moved
    resumed = Trainer.resume(copy)
    assert resumed.D.augment.p.item() == 0.5 and resumed.D.augment.count.item() > 0
    resumed.step()
    got = snapshot(resumed)
    different = [k for k in end if not torch.equal(end[k], got[k])]
    assert not different, f"not bitwise equal after resume: {different[:5]}"


# ------------------------------------------------------------------------------ GPU
@pytest.mark.cuda
def test_diffusion_steps_never_wait_for_the_gpu(tmp_path):
    augment = "discriminator.augment={name: diffusion, p: 0.5, interval: 1}"
    trainer = build_from_spec(make_spec(tmp_path, augment))
    trainer.step()  # warm-up: cuDNN autotuning, allocator growth
    with no_host_sync():
        logs = [trainer.step() for _ in range(3)]
    assert all(s["augment_T"].device == trainer.device for s in logs)
