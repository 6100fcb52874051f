"""The projection head's seed: derived from ``train.seed`` unless given, kept in checkpoints."""

from __future__ import annotations

import pytest
import torch

from projected_gan import ExperimentSpec, build_from_spec
from projected_gan.checkpoint import load_checkpoint
from projected_gan.discriminators import ProjectedDiscriminator
from projected_gan.projectors import CCMCSM, Projector
from tests.conftest import tiny_overrides

NET = {"name": "tf_efficientnet_lite0", "pretrained": False}


def _head_weights(disc: ProjectedDiscriminator) -> list[torch.Tensor]:
    return [p.detach().clone() for p in disc.projector.head.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_projection_seed_draws_the_head_unless_its_spec_names_one():
    a = ProjectedDiscriminator(feature_network=NET, projection_seed=3, img_resolution=64)
    b = ProjectedDiscriminator(feature_network=NET, projection_seed=3, img_resolution=64)
    c = ProjectedDiscriminator(feature_network=NET, projection_seed=4, img_resolution=64)
    assert a.projection_seed == 3 and c.projection_seed == 4
    assert _same(_head_weights(a), _head_weights(b))
    assert not _same(_head_weights(a), _head_weights(c))
    # a seed named in the head's own spec wins over the pipeline's
    named = ProjectedDiscriminator(
        feature_network=NET,
        projection_head={"name": "ccm_csm", "seed": 7},
        projection_seed=3,
        img_resolution=64,
    )
    assert named.projection_seed == 7
    # heads without randomness have no seed, and accept the argument silently
    plain = ProjectedDiscriminator(
        feature_network=NET, projection_head=None, projection_seed=3, img_resolution=64
    )
    assert plain.projection_seed is None


def test_projection_seed_errors_are_named():
    with pytest.raises(ValueError, match="projection_seed"):
        ProjectedDiscriminator(feature_network=NET, projection_seed="1", img_resolution=64)
    disc = ProjectedDiscriminator(feature_network=NET, img_resolution=64)
    projector = Projector(
        disc.projector.feature_network,
        CCMCSM(disc.projector.feature_network.channels, (4, 8, 16, 32)),
    )
    with pytest.raises(ValueError, match="projection_seed"):
        ProjectedDiscriminator(projector=projector, projection_seed=1, img_resolution=64)


def _spec(out_dir, *extra: str) -> ExperimentSpec:
    return ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[
            *tiny_overrides(out_dir),
            "discriminator.feature_network.pretrained=false",
            *extra,
        ],
    )


def test_training_derives_the_projection_seed_from_train_seed_and_checkpoints_it(tmp_path):
    five = build_from_spec(_spec(tmp_path / "a", "train.seed=5"))
    assert five.D.projection_seed == 5
    zero = build_from_spec(_spec(tmp_path / "b", "train.seed=0"))
    assert zero.D.projection_seed == 0
    assert not _same(_head_weights(five.D), _head_weights(zero.D))
    given = build_from_spec(
        _spec(tmp_path / "c", "train.seed=5", "discriminator.projection_head.seed=0")
    )
    assert given.D.projection_seed == 0
    assert _same(_head_weights(given.D), _head_weights(zero.D))

    path = five.save()
    ckpt = load_checkpoint(path)
    assert ckpt.meta["projection_seed"] == 5
    own = {k: v for k, v in five.D.state_dict().items() if k.startswith("projector.head.")}
    assert own and all(torch.equal(ckpt.models["D"][k], v) for k, v in own.items())
