"""Transformer feature networks (vit/ family): blocks, token maps, strides, weights, training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import projected_gan
from projected_gan.projectors import (
    PretrainedWeightsError,
    TransformerFeatureNetwork,
    create_timm_model,
    evenly_spaced_blocks,
)
from tests.conftest import adversarial_round

ROOT = Path(__file__).resolve().parents[1]
DEIT = "vit/deit_tiny_distilled_patch16_224"  # 12 blocks, 192 channels, 2 prefix tokens


def images(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def deit() -> TransformerFeatureNetwork:
    torch.manual_seed(0)
    return projected_gan.create("feature_networks", DEIT, pretrained=False, input_size=64)


def test_evenly_spaced_blocks():
    assert evenly_spaced_blocks(12, 4) == (2, 5, 8, 11)
    assert evenly_spaced_blocks(4, 4) == (0, 1, 2, 3)
    assert evenly_spaced_blocks(24, 4) == (5, 11, 17, 23)
    with pytest.raises(ValueError, match="cannot take 4 blocks"):
        evenly_spaced_blocks(3, 4)


def test_vit_gives_four_maps_at_strides_4_to_32(deit):
    assert deit.blocks == (2, 5, 8, 11)
    assert deit.channels == (192, 192, 192, 192)
    assert deit.reductions == (4, 8, 16, 32) and deit.native_reductions == (16, 16, 16, 16)
    assert deit.mean == pytest.approx((0.485, 0.456, 0.406))  # DeiT's own statistics
    assert not any(p.requires_grad for p in deit.parameters())
    for size in (32, 64, 96):  # always resized to input_size: the token grid is fixed
        with torch.no_grad():
            feats = deit(images(size=size))
        assert [tuple(f.shape) for f in feats] == [(2, 192, s, s) for s in (16, 8, 4, 2)]
        assert deit.output_sizes(size) == tuple((s, s) for s in (16, 8, 4, 2))
    with torch.no_grad():  # a non-square image is stretched to the fixed grid
        feats = deit(torch.zeros(1, 3, 32, 48))
    assert deit.seen_size((32, 48)) == (64, 64) and feats[-1].shape[-2:] == (2, 2)


def test_stride_16_map_is_the_blocks_tokens_in_the_models_own_normalisation(deit):
    """Independent of forward_intermediates: hooks on the patch embedding and block 8."""
    seen = {}
    hooks = [
        deit.body.patch_embed.register_forward_pre_hook(
            lambda _m, args: seen.__setitem__("input", args[0])
        ),
        deit.body.blocks[8].register_forward_hook(
            lambda _m, _i, out: seen.__setitem__("tokens", out)
        ),
    ]
    x = images(size=64)
    try:
        with torch.no_grad():
            feats = deit(x)
    finally:
        for h in hooks:
            h.remove()
    mean = torch.tensor(deit.mean).view(1, 3, 1, 1)
    std = torch.tensor(deit.std).view(1, 3, 1, 1)
    torch.testing.assert_close(seen["input"], ((x + 1) / 2 - mean) / std)
    tokens = seen["tokens"]
    assert tokens.shape == (2, 2 + 16, 192)  # class + distillation tokens, then a 4x4 grid
    grid = tokens[:, 2:].reshape(2, 4, 4, 192).permute(0, 3, 1, 2)
    torch.testing.assert_close(feats[2], grid, rtol=0, atol=0)
    # The other strides are resampled maps: same channels, coarser or finer grid.
    assert feats[0].shape[-1] == 4 * grid.shape[-1] and feats[3].shape[-1] == grid.shape[-1] // 2


def test_later_blocks_and_classifier_are_pruned():
    net = projected_gan.create(
        "feature_networks", DEIT, pretrained=False, input_size=64, blocks=(1, 3, 5, 7)
    )
    assert len(net.body.blocks) == 8
    assert isinstance(net.body.head, nn.Identity)


def test_swin_stages_already_at_strides_4_to_32_pass_through():
    net = projected_gan.create(
        "feature_networks", "vit/swin_tiny_patch4_window7_224", pretrained=False, input_size=64
    )
    assert net.blocks == (0, 1, 2, 3) and net.native_reductions == (4, 8, 16, 32)
    assert net.channels == (96, 192, 384, 768)
    with torch.no_grad():
        feats = net(images(batch=1, size=64))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="same length"):
        TransformerFeatureNetwork(
            DEIT[4:], pretrained=False, input_size=64, blocks=(1, 2), strides=(8, 16, 32)
        )
    with pytest.raises(ValueError, match="increasing indices"):
        TransformerFeatureNetwork(DEIT[4:], pretrained=False, input_size=64, blocks=(1, 1, 2, 40))
    with pytest.raises(ValueError, match="strides must be positive"):
        TransformerFeatureNetwork(DEIT[4:], pretrained=False, strides=(4, 0, 16, 32))


def test_weights_file_loads_and_offline_without_one_says_both_ways(tmp_path, offline):
    from safetensors.torch import save_file

    torch.manual_seed(5)
    state = create_timm_model(DEIT[4:], pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "deit.safetensors"))
    net = projected_gan.create(
        "feature_networks", DEIT, weights=str(tmp_path / "deit.safetensors"), input_size=224
    )
    loaded = net.body.state_dict()
    assert len(loaded) > 100
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)

    with pytest.raises(PretrainedWeightsError) as info:
        projected_gan.create("feature_networks", DEIT)  # pretrained=True, no file, no network
    message = str(info.value)
    for needle in ("deit_tiny_distilled_patch16_224", "weights=", "timm", "pretrained=False"):
        assert needle in message


def test_vit_discriminator_trains_and_gradient_reaches_g():
    torch.manual_seed(0)
    G = projected_gan.create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    D = projected_gan.ProjectedDiscriminator(
        feature_network={"name": DEIT, "pretrained": False, "input_size": 64},
        img_resolution=32,
    )
    assert D.projector.feature_network.reductions == (4, 8, 16, 32)
    assert D(images(size=32)).shape == (2, D.discriminator.num_logits)
    adversarial_round(G, D, images(batch=4, size=32))


def test_listing_and_describing_parts_does_not_import_timm():
    code = (
        "import sys, projected_gan as pg\n"
        "names = pg.list_parts('feature_networks')\n"
        "card = pg.FEATURE_NETWORKS.describe('vit/deit_base_patch16_224')\n"
        "print('vit/' in names, 'strides 4-32' in card, 'timm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True", "False"], out.stdout + out.stderr
