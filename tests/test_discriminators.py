"""Discriminators: multi-scale heads and the composable ProjectedDiscriminator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import projected_gan
from projected_gan.augmentations import DiffAugment
from projected_gan.discriminators import (
    MultiScaleDiscriminator,
    ProjectedDiscriminator,
    ScaleDiscriminator,
)
from projected_gan.projectors import CCM, CCMCSM, NoProjection, Projector

ROOT = Path(__file__).resolve().parents[1]
CSM_CHANNELS, CSM_REDUCTIONS = (64, 64, 128, 256), (2, 4, 8, 16)


def images(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


def maps_for(disc: MultiScaleDiscriminator, batch: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch, c, *s, generator=g) for c, s in zip(disc.channels, disc.sizes)]


def square(*sides: int) -> tuple[tuple[int, int], ...]:
    """``(h, w)`` pairs of square maps: ``square(4, 2) == ((4, 4), (2, 2))``."""
    return tuple((s, s) for s in sides)


class TinyHeads(nn.Module):
    """A user's own discriminator: one 1x1 conv per scale, mean logit per scale."""

    def __init__(self, channels=(16, 16, 32, 64)):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in channels)

    def forward(self, features, labels=None):
        return torch.cat([conv(f).mean((2, 3)) for conv, f in zip(self.convs, features)], 1)


@pytest.fixture(scope="module")
def small_projector() -> Projector:
    """Real pretrained lite0 at native 64 px (no resize) with CCM+CSM: sides 32, 16, 8, 4."""
    net = projected_gan.create(
        "feature_networks", "tf_efficientnet_lite0", resize="never", input_size=None
    )
    return Projector(net, CCMCSM(net.channels, net.reductions, cout=16))


# --------------------------------------------------------------------------- the done-when
def test_defaults_at_256():
    disc = ProjectedDiscriminator()  # lite0 (pretrained), ccm_csm, multiscale, DiffAugment
    assert isinstance(disc.augment, DiffAugment)
    assert disc.augment.policy == "color,translation,cutout"
    assert disc.discriminator.sizes == square(128, 64, 32, 16)
    trainable = disc.trainable_parameters()
    count = sum(p.numel() for p in trainable)
    assert 10.2e6 < count < 10.4e6, count
    assert {id(p) for p in trainable} == {id(p) for p in disc.discriminator.parameters()}
    assert not any(p.requires_grad for p in disc.projector.parameters())

    x = images(size=256).requires_grad_()
    logits = disc(x)
    assert logits.shape == (2, 100)
    logits.mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.projector.parameters())


def test_below_224_images_are_resized_so_every_scale_gives_4x4_logits():
    # sizing needs no forward pass: projector.output_sizes and seen_size are arithmetic
    net = projected_gan.create("feature_networks", "tf_efficientnet_lite0")
    projector = Projector(net, CCMCSM(net.channels, net.reductions))
    assert projector.seen_size(64) == projector.seen_size(128) == (224, 224)
    assert projector.output_sizes(64) == projector.output_sizes(128) == square(112, 56, 28, 14)
    heads = MultiScaleDiscriminator(projector.channels, projector.reductions, 224)
    assert heads.sizes == square(112, 56, 28, 14)
    assert heads.logit_sizes == square(4, 4, 4, 4)
    with torch.no_grad():
        out = heads.eval()(maps_for(heads))
    assert out.shape == (2, 64)


def test_conditional_labels_change_logits_and_accept_ints_or_one_hot():
    disc = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 64, num_classes=5).eval()
    feats = maps_for(disc)
    with torch.no_grad():
        a = disc(feats, torch.tensor([0, 1]))
        b = disc(feats, torch.tensor([3, 4]))
        one_hot = disc(feats, torch.eye(5)[[0, 1]])
    assert a.shape == (2, disc.num_logits)
    assert (a - b).abs().min() > 0  # every logit depends on the class
    torch.testing.assert_close(a, one_hot, rtol=0, atol=0)
    with pytest.raises(ValueError, match="labels are required"):
        disc(feats)
    with pytest.raises(ValueError, match="one-hot"):
        disc(feats, torch.rand(2, 3))


def test_conditional_projected_discriminator(small_projector):
    disc = ProjectedDiscriminator(
        projector=small_projector, augment=None, num_classes=5, img_resolution=64
    ).eval()
    x = images()
    with torch.no_grad():
        a, b = disc(x, torch.tensor([0, 0])), disc(x, torch.tensor([2, 2]))
    assert not torch.allclose(a, b)
    assert disc.discriminator.num_classes == 5


# ---------------------------------------------------------------------------- multi-scale
def test_multiscale_layout_matches_the_channel_table():
    disc = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 256)
    assert [d.num_down for d in disc.discs] == [4, 3, 2, 1]
    first = [m for m in disc.discs[0].modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in first] == [
        (64, 64),
        (64, 128),
        (128, 256),
        (256, 512),
        (512, 1),
    ]
    assert (
        first[-1].kernel_size == (4, 4) and first[-1].padding == (0, 0) and first[-1].bias is None
    )
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert all(parametrize.is_parametrized(c, "weight") for c in convs)  # spectral norm everywhere
    assert disc.num_logits == 100


def _trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_official_head_layout_at_512_gives_13x13_logits_per_scale():
    # The official code lays the heads out for a 256 px image whatever the real size.
    disc = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "pretrained": False},
        img_resolution=512,
        augment=None,
    ).eval()
    heads = disc.discriminator
    assert heads.sizes == square(256, 128, 64, 32)
    assert heads.layout_sizes == (128, 64, 32, 16)
    assert [d.num_down for d in heads.discs] == [4, 3, 2, 1]
    assert heads.logit_sizes == square(13, 13, 13, 13)
    assert heads.num_logits == 676
    at_256 = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 256)
    assert _trainable(heads) == _trainable(at_256) == 10_331_328
    with torch.no_grad():
        logits = disc(images(batch=1, size=512))
    assert logits.shape == (1, 676) and torch.isfinite(logits).all()


def test_official_head_layout_at_1024_gives_29x29_logits_per_scale():
    # Sizing is arithmetic; the heads run on maps of the real sides (no 1024 px backbone pass).
    net = projected_gan.create("feature_networks", "tf_efficientnet_lite0", pretrained=False)
    projector = Projector(net, CCMCSM(net.channels, net.reductions))
    sizes = projector.output_sizes(1024)
    assert sizes == square(512, 256, 128, 64)
    heads = MultiScaleDiscriminator(projector.channels, projector.reductions, 1024).eval()
    assert heads.sizes == sizes and heads.layout_sizes == (128, 64, 32, 16)
    assert heads.num_logits == 4 * 29 * 29 == 3364
    assert _trainable(heads) == 10_331_328
    with torch.no_grad():
        logits = heads(maps_for(heads, batch=1))
    assert logits.shape == (1, 3364)


def test_size_heads_to_maps_keeps_5x5_logits_above_256():
    for res, downs, count in ((512, [5, 4, 3, 2], 11_774_656), (1024, [6, 5, 4, 3], 11_841_056)):
        disc = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, res, size_heads_to_maps=True)
        assert disc.sizes == square(*disc.layout_sizes)
        assert disc.layout_sizes == tuple(res // r for r in CSM_REDUCTIONS)
        assert [d.num_down for d in disc.discs] == downs
        assert disc.logit_sizes == square(5, 5, 5, 5)
        assert _trainable(disc) == count
    disc = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 512, size_heads_to_maps=True)
    with torch.no_grad():
        assert disc.eval()(maps_for(disc, batch=1)).shape == (1, 100)


@pytest.mark.parametrize("res", [64, 100, 128, 224, 256])
def test_both_layouts_agree_at_256_and_below(res):
    official = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, res)
    per_map = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, res, size_heads_to_maps=True)
    assert official.sizes == square(*official.layout_sizes) == per_map.sizes
    assert [d.num_down for d in official.discs] == [d.num_down for d in per_map.discs]
    assert official.num_logits == per_map.num_logits
    assert _trainable(official) == _trainable(per_map)


def test_layout_size_of_one_scale():
    disc = ScaleDiscriminator(64, 256, layout_size=128)
    assert disc.num_down == 4 and disc.logit_size == (13, 13)
    assert disc(torch.randn(1, 64, 256, 256)).shape == (1, 1, 13, 13)
    with pytest.raises(ValueError, match="layout_size"):
        ScaleDiscriminator(64, 32, layout_size=64)


def test_separable_and_group_norm_options():
    sep = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 256, separable=True)
    count = sum(p.numel() for p in sep.parameters())
    assert 0.6e6 < count < 0.8e6, count
    assert any(isinstance(m, nn.AvgPool2d) for m in sep.modules())
    grouped = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 64, norm="group")
    assert any(isinstance(m, nn.GroupNorm) for m in grouped.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in grouped.modules())
    for disc in (sep, grouped):
        out = disc(maps_for(disc))
        assert out.shape == (2, disc.num_logits) and torch.isfinite(out).all()


def test_multiscale_bad_arguments_are_named():
    with pytest.raises(ValueError, match="norm"):
        MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 64, norm="layer")
    with pytest.raises(ValueError, match="below 4"):
        MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 16)
    with pytest.raises(ValueError, match="num_classes"):
        MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 64, num_classes=-1)
    with pytest.raises(ValueError, match="same length"):
        MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS[:3], 64)
    disc = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 64)
    with pytest.raises(ValueError, match="expected 4 feature maps"):
        disc(maps_for(disc)[:3])
    with pytest.raises(ValueError, match="num_classes=0"):
        disc(maps_for(disc), torch.tensor([1, 2]))
    assert disc(maps_for(disc), torch.zeros(2, 0)).shape == (2, disc.num_logits)


def test_multiscale_bf16_autocast_and_channels_last():
    disc = MultiScaleDiscriminator(CSM_CHANNELS, CSM_REDUCTIONS, 64).eval()
    feats = maps_for(disc)
    with torch.no_grad():
        ref = disc(feats)
        cl = disc([f.contiguous(memory_format=torch.channels_last) for f in feats])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = disc(feats)
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()


def test_scale_discriminator_output_shape():
    disc = ScaleDiscriminator(24, 56)
    assert disc(torch.randn(2, 24, 56, 56)).shape == (2, 1, 4, 4)


# --------------------------------------------------------------------- ProjectedDiscriminator
def test_d_step_runs_projector_without_autograd_g_step_with_it(small_projector):
    disc = ProjectedDiscriminator(projector=small_projector, img_resolution=64)
    seen = []
    hook = disc.projector.register_forward_hook(
        lambda _m, _i, out: seen.append((torch.is_grad_enabled(), out[0].requires_grad))
    )
    try:
        logits = disc(images())  # D step: reals / fakes made without grad
        assert seen[-1] == (False, False)
        assert logits.requires_grad  # the heads still build their graph
        logits.mean().backward()
        assert all(p.grad is not None for p in disc.trainable_parameters())

        x = images().requires_grad_()  # G step
        disc.requires_grad_(False)
        disc(x).mean().backward()
        assert seen[-1] == (True, True)
        assert x.grad.abs().sum() > 0

        with torch.no_grad():
            assert not disc(x).requires_grad
    finally:
        hook.remove()


def test_projector_stays_frozen_through_train_and_requires_grad(small_projector):
    disc = ProjectedDiscriminator(projector=small_projector, augment=None, img_resolution=64)
    disc.train()
    disc.requires_grad_(True)
    assert disc.training and disc.discriminator.training
    assert not disc.projector.training
    assert not any(m.training for m in disc.projector.modules())
    assert not any(p.requires_grad for p in disc.projector.parameters())
    assert all(p.requires_grad for p in disc.trainable_parameters())
    disc.requires_grad_(False)
    assert not any(p.requires_grad for p in disc.parameters())


def test_parts_by_instance_name_or_dict():
    disc = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "resize": "never", "input_size": None},
        projection_head={"name": "ccm", "cout": 8, "expand": False, "seed": 3},
        discriminator={"name": "multiscale", "norm": "group"},
        augment=["translation", "cutout"],
        img_resolution=128,
    )
    head = disc.projector.head
    assert isinstance(head, CCM) and head.channels == (8, 8, 8, 8) and head.seed == 3
    assert disc.discriminator.sizes == square(32, 16, 8, 4)  # CCM keeps the strides 4 ... 32
    assert disc.projector.feature_network.resize == "never"
    assert disc.augment.policy == "translation,cutout"

    no_head = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0"},
        projection_head=None,
        augment="",
        img_resolution=256,
    )
    assert isinstance(no_head.projector.head, NoProjection) and no_head.augment is None
    assert no_head.discriminator.channels == (24, 40, 112, 320)


def test_augment_specs(small_projector):
    def build(augment):
        return ProjectedDiscriminator(
            projector=small_projector, discriminator=TinyHeads(), augment=augment, img_resolution=64
        ).augment

    assert build(None) is None
    assert build("diffaugment").policy == "color,translation,cutout"  # a registered name
    assert build("translation").policy == "translation"  # a single op is a policy
    assert build({"name": "diffaugment", "policy": "cutout"}).policy == "cutout"
    mine = DiffAugment("color")
    assert build(mine) is mine
    with pytest.raises(TypeError, match="augment"):
        build(3.5)


def test_augmentation_is_applied_to_every_input(small_projector):
    heads = TinyHeads()
    plain = ProjectedDiscriminator(projector=small_projector, discriminator=heads, augment=None)
    augmented = ProjectedDiscriminator(
        projector=small_projector, discriminator=heads, augment="color,translation,cutout"
    )
    assert plain.trainable_parameters() == list(heads.parameters())
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), plain(x))
        assert not torch.allclose(augmented(x), augmented(x))


def test_wiring_errors_are_named(small_projector):
    with pytest.raises(ValueError, match="wired automatically"):
        ProjectedDiscriminator(
            projector=small_projector,
            discriminator={"name": "multiscale", "channels": (1, 2, 3, 4)},
            img_resolution=64,
        )
    with pytest.raises(ValueError, match="either projector="):
        ProjectedDiscriminator(projector=small_projector, feature_network="timm/resnet18")
    with pytest.raises(TypeError, match="discriminator must be"):
        ProjectedDiscriminator(projector=small_projector, discriminator=42, img_resolution=64)
    with pytest.raises(ValueError, match="'name'"):
        ProjectedDiscriminator(projector=small_projector, discriminator={"separable": True})
    with pytest.raises(ValueError, match="img_resolution"):
        ProjectedDiscriminator(projector=small_projector, img_resolution=0)
    disc = ProjectedDiscriminator(projector=small_projector, discriminator=TinyHeads())
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        disc(torch.zeros(2, 64, 64))


def test_registered_multiscale_is_creatable():
    disc = projected_gan.create(
        "discriminators",
        "multiscale",
        channels=CSM_CHANNELS,
        reductions=CSM_REDUCTIONS,
        image_size=256,
    )
    assert isinstance(disc, MultiScaleDiscriminator) and disc.num_logits == 100
    assert "separable = False" in projected_gan.DISCRIMINATORS.describe("multiscale")


@pytest.mark.slow
def test_custom_discriminator_example_runs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_discriminator.py")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "logits (2, 100)" in result.stdout
    assert "step 1:" in result.stdout
