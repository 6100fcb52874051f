"""The spec's GAN variants together: augmentation (DiffAugment, diffusion noise) x heads (plain,
SAN) x loss (hinge, non-saturating, LSGAN, RpGAN) x penalties (none, R1, R2, both).

All 64 combinations are valid specs whose parts build. Training steps (the real training step,
on the CPU) cover every *pair* of values of the four factors: each (augmentation, heads) setup
runs four (loss, penalties) combinations laid out as a Latin square, so together the 16 runs
hold all 16 (loss, penalties) pairs and every loss and every penalty with each setup. A full
factorial of steps would cost four times the time for no interaction the pairs do not reach:
the step's code paths branch on the loss (paired or not), the penalties and the split logits,
each of which meets each other here.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from projected_gan import ExperimentSpec, Trainer, build_from_spec
from projected_gan.distributed import DistInfo
from projected_gan.training.assemble import build_loss
from projected_gan.training.step import TrainingStep
from tests.conftest import tiny_overrides

AUGMENTS = {
    "diffaugment": "discriminator.augment={name: diffaugment, policy: 'color,translation,cutout'}",
    # p starts high so the noise is really drawn in two steps (speed_kimg tiny: p moves too).
    "diffusion": "discriminator.augment={name: diffusion, p: 0.8, speed_kimg: 0.001, interval: 1}",
}
HEADS = {
    "plain": "discriminator.discriminator=multiscale",
    "san": "discriminator.discriminator={name: multiscale, san: true}",
}
LOSSES = ("hinge", "nonsaturating", "lsgan", "rpgan")
PENALTIES = {
    "none": [],
    "r1": ["loss.r1_gamma=1.0", "loss.penalty_interval=1"],
    "r2": ["loss.r2_gamma=1.0", "loss.penalty_interval=1"],
    "r1+r2": ["loss.r1_gamma=1.0", "loss.r2_gamma=1.0", "loss.penalty_interval=1"],
}


def _overrides(tmp_path, augment: str, head: str, loss: str, penalty: str) -> list[str]:
    return [
        *tiny_overrides(tmp_path),
        "discriminator.feature_network.pretrained=false",
        "train.batch=2",
        AUGMENTS[augment],
        HEADS[head],
        f"loss.name={loss}",
        *PENALTIES[penalty],
    ]


def test_every_combination_is_a_valid_spec(tmp_path):
    for combo in itertools.product(AUGMENTS, HEADS, LOSSES, PENALTIES):
        spec = ExperimentSpec.load(preset="minimal_cpu", overrides=_overrides(tmp_path, *combo))
        loss, penalty = build_loss(spec)
        assert loss.paired == (combo[2] == "rpgan")
        assert (penalty is None) == (combo[3] == "none")


SETUPS = list(itertools.product(AUGMENTS, HEADS))


@pytest.mark.parametrize("k", range(len(SETUPS)), ids=["/".join(x) for x in SETUPS])
def test_loss_and_penalty_pairs_train_with_each_setup(tmp_path, k):
    augment, head = SETUPS[k]
    base = build_from_spec(
        ExperimentSpec.load(
            preset="minimal_cpu", overrides=_overrides(tmp_path, augment, head, "hinge", "none")
        )
    )
    assert base.D.splits_logits == (head == "san")
    reals = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator())
    penalties = list(PENALTIES)
    for i, loss_name in enumerate(LOSSES):
        penalty_name = penalties[(i + k) % len(penalties)]  # Latin square over the setups
        torch.manual_seed(0)
        spec = ExperimentSpec.load(
            preset="minimal_cpu",
            overrides=_overrides(tmp_path, augment, head, loss_name, penalty_name),
        )
        loss, penalty = build_loss(spec)
        step = TrainingStep(
            copy.deepcopy(base.core.G),
            copy.deepcopy(base.core.D),
            loss=loss,
            penalty=penalty,
            spec=spec,
            device=torch.device("cpu"),
            dist=DistInfo(),
            label_pool=None,
            global_batch=2,
        )
        heads = [p.detach().clone() for p in step.D.trainable_parameters()]
        g_before = [p.detach().clone() for p in step.G.parameters()]
        values = {k: float(v) for k, v in step(reals, None, step_index=0, nimg=0).items()}
        where = f"{augment}/{head}/{loss_name}/{penalty_name}"
        assert all(torch.isfinite(torch.tensor(v)) for v in values.values()), (where, values)
        assert ("loss_r1" in values) == ("r1" in penalty_name), where
        assert ("loss_r2" in values) == ("r2" in penalty_name), where
        assert values.get("loss_r1", 1.0) > 0 and values.get("loss_r2", 1.0) > 0, where
        moved = [not torch.equal(a, b) for a, b in zip(heads, step.D.trainable_parameters())]
        assert any(moved), where
        assert any(not torch.equal(a, b) for a, b in zip(g_before, step.G.parameters())), where
        if augment == "diffusion":
            # interval 1: p moved after the step, and T is reported
            assert values["augment_p"] != 0.8 and values["augment_T"] >= 5, where


def test_the_latin_square_covers_every_loss_and_penalty_pair():
    pairs = {
        (loss, list(PENALTIES)[(i + k) % len(PENALTIES)])
        for k in range(len(SETUPS))
        for i, loss in enumerate(LOSSES)
    }
    assert pairs == set(itertools.product(LOSSES, PENALTIES))


def test_conditional_run_with_every_variant_at_once_trains_and_resumes(tmp_path):
    overrides = [
        *_overrides(tmp_path, "diffusion", "san", "rpgan", "r1+r2"),
        "data.conditional=true",
        # two steps, one checkpoint; the penalties on the first step only
        *("train.kimg=0.004", "train.tick=0.004", "train.snapshot_every=0.004"),
        *("train.sample_every=0.004", "loss.penalty_interval=2"),
    ]
    spec = ExperimentSpec.load(preset="minimal_cpu", overrides=overrides)
    trainer = build_from_spec(spec)
    assert trainer.D.splits_logits and trainer.D.num_classes > 0
    trainer.fit()
    logs = trainer.run_dir / "log.jsonl"
    assert "loss_r2" in logs.read_text() and "augment_T" in logs.read_text()
    resumed = Trainer.resume(trainer.run_dir)
    assert resumed.D.splits_logits and resumed.spec == trainer.spec
    assert float(resumed.D.augment.p) == float(trainer.D.augment.p)
    resumed.step()  # one more conditional step after the resume
