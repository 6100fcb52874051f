"""Feature networks and projection heads on non-square images: the aspect kept by the short
side, the maps' (h, w) sizes, CCM + CSM on odd non-square maps, the dry forward at (H, W)."""

from __future__ import annotations

import math

import pytest
import torch

import projected_gan
from projected_gan.projectors import CCM, CCMCSM, check_feature_network
from tests.test_projectors import CH, RED, Recorder


@pytest.fixture(scope="module")
def lite0():
    return projected_gan.create("feature_networks", "tf_efficientnet_lite0", pretrained=True)


@pytest.mark.parametrize(
    ("resize", "size", "seen"),
    [
        ("upsample_only", (32, 48), (48, 72)),  # short side up to 48, the aspect kept
        ("upsample_only", (48, 32), (72, 48)),
        ("upsample_only", (21, 32), (48, 73)),  # 32 * 48 / 21 = 73.1: rounded
        ("upsample_only", (64, 40), (77, 48)),  # 64 * 48 / 40 = 76.8
        ("upsample_only", (48, 96), (48, 96)),  # short side reached: native
        ("upsample_only", (64, 96), (64, 96)),
        ("always", (64, 96), (48, 72)),  # down to short side 48
        ("always", (16, 16), (48, 48)),
        ("never", (32, 48), (32, 48)),
    ],
)
def test_resize_rule_keeps_the_aspect_by_the_short_side(resize, size, seen):
    net = Recorder(input_size=48, resize=resize)
    x = torch.rand(1, 3, *size) * 2 - 1
    with torch.no_grad():
        feats = net(x)
    assert tuple(net.seen.shape[-2:]) == seen
    assert net.seen_size(size) == seen
    assert net.output_sizes(size) == tuple(tuple(f.shape[-2:]) for f in feats)
    assert feats[-1].shape[-2:] == (math.ceil(seen[0] / 4), math.ceil(seen[1] / 4))


def test_lite0_sees_64x96_at_224x336_with_7x11_deepest_maps(lite0):
    with torch.no_grad():
        feats = lite0(torch.zeros(1, 3, 64, 96))
    want = ((56, 84), (28, 42), (14, 21), (7, 11))
    assert lite0.seen_size((64, 96)) == (224, 336)
    assert tuple(tuple(f.shape[-2:]) for f in feats) == lite0.output_sizes((64, 96)) == want
    assert lite0.output_sizes((96, 64)) == tuple((w, h) for h, w in want)


def test_ccm_csm_on_odd_non_square_maps():
    """7x11 at the deepest scale: x2 gives 14x22 against the next map's 14x21, resampled."""
    head = CCMCSM(CH, RED, cout=8, seed=0)
    sizes = ((56, 84), (28, 42), (14, 21), (7, 11))
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, c, h, w, generator=g) for c, (h, w) in zip(CH, sizes)]
    out = head(feats)
    want = head.output_sizes(sizes)
    assert want == ((112, 168), (56, 84), (28, 42), (14, 22))
    assert tuple(tuple(o.shape[-2:]) for o in out) == want
    assert [o.shape[1] for o in out] == list(head.channels)
    assert all(torch.isfinite(o).all() for o in out)
    ccm = CCM(CH, RED, cout=8, seed=0)
    assert [tuple(o.shape[-2:]) for o in ccm(feats)] == list(sizes) == list(ccm.output_sizes(sizes))


def test_check_feature_network_dry_forward_accepts_height_and_width():
    net = Recorder(input_size=None, resize="never")
    check_feature_network(net, image_size=(6, 10))  # native: a 6x10 dry forward
    assert tuple(net.seen.shape[-2:]) == (6, 10)
    with pytest.raises(ValueError, match="image_size"):
        check_feature_network(net, image_size=(6, 0))
