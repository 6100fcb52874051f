"""Official snapshots whose discriminator was pickled under a newer timm (>= 0.9: classes in
``timm.layers`` / ``timm.models._efficientnet_blocks``, BatchNorm and activation fused into
``BatchNormAct2d``) read the same as those pickled under the official timm 0.4.12 paths."""

from __future__ import annotations

import pytest
import torch

import projected_gan as pg
from projected_gan.official import read_network_pickle
from tests import official_structure as official


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    import timm

    folder = tmp_path_factory.mktemp("timm")
    trunk = official.lite0_trunk(timm.create_model("tf_efficientnet_lite0", pretrained=False))
    torch.manual_seed(3)
    G = pg.create("generators", "fastgan_lite", img_resolution=32, z_dim=8, ngf=2).eval()
    D = pg.ProjectedDiscriminator(img_resolution=32, num_classes=0).eval()
    data = official.snapshot(
        official.fastgan_generator(G),
        official.fastgan_generator(G),
        official.projected_discriminator(D, trunk, 32),
    )
    old = official.dump(data, folder / "old.pkl")
    new = official.dump(data, folder / "new.pkl", official.NewTimmPickler)
    return D, old, new


def test_the_newer_timm_pickle_names_the_newer_classes(both):
    _, old, new = both
    for path, names, absent in (
        (old, [b"timm.models.efficientnet_blocks"], b"BatchNormAct2d"),
        (new, [b"timm.layers.norm_act", b"BatchNormAct2d", b"timm.models._efficientnet_blocks"],
         b"timm.models.efficientnet_blocks"),
    ):  # fmt: skip
        data = path.read_bytes()
        assert all(n in data for n in names) and absent not in data


def test_both_timm_layouts_read_the_same(both):
    D, old, new = both
    a, b = read_network_pickle(old), read_network_pickle(new)
    assert b.discriminator == a.discriminator
    assert b.info["feature_network"] == a.info["feature_network"]
    assert b.info["feature_network"]["tensors"] == 288
    assert set(b.models["D"]) == set(a.models["D"])
    ours = D.state_dict()
    for key, value in b.models["D"].items():
        assert torch.equal(value, a.models["D"][key]) and torch.equal(value, ours[key]), key
    assert "timm.layers.norm_act.BatchNormAct2d" in b.info["classes"]
