"""The projected discriminator on H x W images with 1 to 16 channels, and the augmentations on
them: shapes, gradients, the learned RGB view, the extra branch, and the square pin."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

import projected_gan
from projected_gan import ProjectedDiscriminator, create_from_config, part_config
from projected_gan.augmentations import Cutout, Translation, colour_channels
from projected_gan.discriminators import (
    MultiScaleDiscriminator,
    ScaleDiscriminator,
    SplitLogits,
)
from projected_gan.discriminators.channels import ExtraView, fixed_rgb_weight
from projected_gan.images import MAX_CHANNELS, rgb_view
from projected_gan.projectors import FeatureNetwork
from projected_gan.registry import AUGMENTATIONS

# random lite0 (no weight files needed), images upsampled to a short side of 64
LITE0 = {"name": "tf_efficientnet_lite0", "pretrained": False, "input_size": 64}
SIZES = [(32, 64), (64, 32)]


@pytest.fixture(scope="module")
def lite0() -> FeatureNetwork:
    return projected_gan.create("feature_networks", **LITE0)


def images(channels: int, size: tuple[int, int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, *size, generator=g) * 2 - 1


def build(lite0, size, channels=3, **kwargs) -> ProjectedDiscriminator:
    kwargs.setdefault("augment", "color,translation,cutout")
    return ProjectedDiscriminator(
        feature_network=lite0, img_resolution=size, img_channels=channels, **kwargs
    )


def digest(lines) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------- the square pin
# Taken from the code before H x W support (commit cc680b8), same seeds: a square D with the
# defaults must keep its module tree, state dict keys and shapes, parameter order and outputs.
SQUARE_PINS = {
    "unconditional": ({}, "12f0f8c09c7dfece", "d97c4c0a97fd2550", 343, 19.674131),
    "conditional": ({"num_classes": 3}, "d126ab4587d203f3", "c281c4b51ba587f8", 355, 10.189733),
}


@pytest.mark.parametrize("case", sorted(SQUARE_PINS))
def test_square_defaults_keep_module_tree_state_dict_and_outputs(case):
    kwargs, tree_pin, state_pin, count, total = SQUARE_PINS[case]
    torch.manual_seed(0)
    D = ProjectedDiscriminator(feature_network=LITE0, img_resolution=32, **kwargs)
    assert D.img_resolution == 32 and D.img_size == (32, 32) and D.img_channels == 3
    tree = digest(f"{name}:{type(m).__name__}" for name, m in D.named_modules())
    state = D.state_dict()
    assert len(state) == count
    assert digest(f"{k}:{tuple(v.shape)}" for k, v in state.items()) == state_pin
    assert tree == tree_pin
    assert not any("rgb_map" in k or "extra" in k for k in state)
    D.augment = None
    labels = torch.tensor([0, 2]) if kwargs else None
    with torch.no_grad():
        out = D.eval()(images(3, (32, 32), seed=1), labels)
    assert out.shape == (2, 76)
    assert out.double().sum().item() == pytest.approx(total, abs=1e-4)


def test_square_heads_keep_their_layout():
    sizes = ((64, 64, 128, 256), (2, 4, 8, 16))
    for side, pin in (
        (64, "0b6f852b5b1fa664"),
        (256, "343aef020751499b"),
        (512, "343aef020751499b"),
    ):
        heads = MultiScaleDiscriminator(*sizes, side)
        assert digest(f"{k}:{tuple(v.shape)}" for k, v in heads.state_dict().items()) == pin


# --------------------------------------------------------------------------------- shapes
def _shapes(module: nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in module.state_dict().items()}


@pytest.mark.parametrize(("size", "short"), [((14, 21), 14), ((21, 14), 14), ((7, 11), 7)])
def test_a_non_square_head_is_the_square_head_of_its_short_side(size, short):
    head = ScaleDiscriminator(16, size)
    assert _shapes(head) == _shapes(ScaleDiscriminator(16, short))
    with torch.no_grad():
        out = head.eval()(torch.randn(2, 16, *size))
    assert tuple(out.shape[-2:]) == head.logit_size
    assert head.logit_size == (size[0] // 2**head.num_down - 3, size[1] // 2**head.num_down - 3)
    assert head.num_logits == head.logit_size[0] * head.logit_size[1]


def test_official_layout_above_256_goes_by_the_short_side():
    channels, reductions = (64, 64, 128, 256), (2, 4, 8, 16)
    heads = MultiScaleDiscriminator(channels, reductions, (512, 768))
    assert heads.sizes == ((256, 384), (128, 192), (64, 96), (32, 48))
    assert heads.layout_sizes == (128, 64, 32, 16)  # as at 256 px
    assert _shapes(heads) == _shapes(MultiScaleDiscriminator(channels, reductions, 256))
    assert heads.logit_sizes == ((13, 21),) * 4
    assert heads.num_logits == 4 * 13 * 21
    portrait = MultiScaleDiscriminator(channels, reductions, (768, 512))
    assert portrait.logit_sizes == ((21, 13),) * 4
    per_map = MultiScaleDiscriminator(channels, reductions, (512, 768), size_heads_to_maps=True)
    assert per_map.layout_sizes == (256, 128, 64, 32) and per_map.logit_sizes == ((5, 9),) * 4
    with torch.no_grad():
        maps = [torch.randn(1, c, *s) for c, s in zip(channels, heads.sizes)]
        assert heads.eval()(maps).shape == (1, heads.num_logits)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("channels", "rgb"), [(1, "fixed"), (3, "fixed"), (4, "learned")])
def test_forward_shapes_and_the_generator_gradient(lite0, size, channels, rgb):
    D = build(lite0, size, channels, rgb=rgb)
    assert D.img_resolution == size and D.img_size == size
    heads = D.discriminator
    h, w = D.projector.seen_size(size)
    assert min(h, w) == 64 and w / h == size[1] / size[0]  # short side up, the aspect kept
    logit_sizes = heads.logit_sizes
    assert all((lh < lw) == (size[0] < size[1]) for lh, lw in logit_sizes[:3])
    assert heads.num_logits == sum(a * b for a, b in logit_sizes)
    x = images(channels, size).requires_grad_()
    logits = D(x)
    assert logits.shape == (2, heads.num_logits)
    logits.mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in D.projector.parameters())


def test_images_with_the_wrong_channel_count_are_refused(lite0):
    D = build(lite0, (32, 64), 4)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\).*got shape \(2, 3, 32, 64\)"):
        D(images(3, (32, 64)))
    with pytest.raises(ValueError, match="img_channels"):
        build(lite0, (32, 64), 0)
    with pytest.raises(ValueError, match="img_channels"):
        build(lite0, (32, 64), MAX_CHANNELS + 1)
    with pytest.raises(ValueError, match="rgb"):
        build(lite0, (32, 64), 4, rgb="mixed")
    with pytest.raises(ValueError, match="extra_branch needs img_channels >= 4"):
        build(lite0, (32, 64), 3, extra_branch=True)
    with pytest.raises(ValueError, match="img_resolution"):
        build(lite0, (32, 0))


# ------------------------------------------------------------------------ learned RGB view
@pytest.mark.parametrize("channels", [1, 2, 4, 5])
def test_learned_view_starts_as_the_fixed_view(lite0, channels):
    D = build(lite0, (32, 64), channels, rgb="learned", augment=None)
    x = images(channels, (32, 64))
    with torch.no_grad():
        torch.testing.assert_close(D.rgb_map(x), rgb_view(x), rtol=0, atol=1e-6)
        fixed = build(lite0, (32, 64), channels, augment=None)
        fixed.load_state_dict({k: v for k, v in D.state_dict().items() if "rgb_map" not in k})
        torch.testing.assert_close(D.eval()(x), fixed.eval()(x), rtol=1e-5, atol=1e-5)
    weight = fixed_rgb_weight(channels)
    assert weight.shape == (3, channels) and weight.sum(1).tolist() == [1.0, 1.0, 1.0]


def test_learned_view_trains_in_the_d_step(lite0):
    D = build(lite0, (64, 32), 4, rgb="learned", num_classes=3)
    assert {"rgb_map.weight", "rgb_map.bias"} <= D.state_dict().keys()
    trained = {id(p) for p in D.trainable_parameters()}
    assert {id(D.rgb_map.weight), id(D.rgb_map.bias)} <= trained
    x = images(4, (64, 32))  # a D step: the images need no gradient
    D(x, torch.tensor([0, 1])).mean().backward()
    assert D.rgb_map.weight.grad is not None and D.rgb_map.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in D.projector.parameters())
    D.requires_grad_(False)
    assert not D.rgb_map.weight.requires_grad
    D.requires_grad_(True)
    assert D.rgb_map.weight.requires_grad
    assert not any(p.requires_grad for p in D.projector.parameters())


# ---------------------------------------------------------------------------- extra branch
@pytest.mark.parametrize("num_classes", [0, 3])
def test_extra_branch_doubles_the_logits_and_shares_the_feature_network(
    lite0, num_classes, tmp_path
):
    D = build(lite0, (32, 64), 4, extra_branch=True, num_classes=num_classes, rgb="learned")
    n = D.discriminator.num_logits
    assert D.extra_discriminator.num_logits == n
    x = images(4, (32, 64)).requires_grad_()
    labels = torch.tensor([0, 2]) if num_classes else None
    logits = D(x, labels)
    assert logits.shape == (2, 2 * n)
    logits[:, n:].mean().backward()  # the extra logits alone reach the extra channel
    assert x.grad[:, 3].abs().sum() > 0
    state = D.state_dict()
    assert not any(k.startswith("extra") and "feature_network" in k for k in state)
    assert sum(k.startswith("projector.feature_network.") for k in state) > 0
    trained = {id(p) for p in D.trainable_parameters()}
    assert {id(p) for p in D.extra_discriminator.parameters()} <= trained
    assert not any(p.requires_grad for p in D.extra_head.parameters())
    # seed + 100: a projection of its own
    assert D.extra_head.seed == D.projector.head.seed + 100
    assert not torch.equal(D.extra_head.ccm[0].weight, D.projector.head.ccm[0].weight)
    from safetensors.torch import save_file  # refuses tensors shared between keys

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "d.safetensors"))


def test_extra_branch_with_san_split_logits(lite0):
    D = build(
        lite0, (64, 32), 5, extra_branch=True, discriminator={"name": "multiscale", "san": True}
    )
    D.augment = None
    x = images(5, (64, 32))
    with torch.no_grad():
        plain = D.eval()(x)
        split = D(x, split=True)
    assert isinstance(split, SplitLogits) and plain.shape[1] == 2 * D.discriminator.num_logits
    torch.testing.assert_close(split.fun, plain)
    torch.testing.assert_close(split.dir, plain)


def test_extra_branch_with_two_feature_networks_uses_the_first(lite0):
    other = projected_gan.create(
        "feature_networks", "timm/resnet18", pretrained=False, input_size=64
    )
    D = ProjectedDiscriminator(
        feature_network=[lite0, other], img_resolution=(32, 64), img_channels=4, extra_branch=True
    )
    first, second = D.discriminators
    assert D.extra_head.channels == D.projectors[0].head.channels
    logits = D(images(4, (32, 64)))
    assert logits.shape == (2, 2 * first.num_logits + second.num_logits)


def test_diffusion_feature_noise_reaches_both_branches(lite0):
    noise = {"name": "diffusion", "policy": "", "p": 1.0, "max_diffused": 1.0}
    D = build(lite0, (32, 64), 4, extra_branch=True, augment=noise).eval()
    n = D.discriminator.num_logits
    x = images(4, (32, 64))
    with torch.no_grad():
        a, b = D(x), D(x)
    assert not torch.equal(a[:, :n], b[:, :n]) and not torch.equal(a[:, n:], b[:, n:])


@pytest.mark.parametrize("extra", [1, 2, 3, 5])
def test_extra_view_of_the_channels_beyond_rgb(extra):
    x = images(3 + extra, (4, 6))
    view = ExtraView(extra, seed=7)(x)
    assert view.shape == (2, 3, 4, 6)
    e = x[:, 3:]
    if extra == 1:
        want = e.expand(-1, 3, -1, -1)
    elif extra == 2:
        want = torch.cat([e, e.mean(1, keepdim=True)], 1)
    elif extra == 3:
        want = e
    else:
        mix = ExtraView(extra, seed=7).mix
        torch.testing.assert_close(mix @ mix.T, torch.eye(3), rtol=0, atol=1e-6)
        assert torch.equal(mix, ExtraView(extra, seed=7).mix)
        assert not torch.equal(mix, ExtraView(extra, seed=8).mix)
        want = torch.einsum("oc,bchw->bohw", mix, e)
    torch.testing.assert_close(view, want)


def test_extra_view_map_is_a_buffer_of_the_state_dict(lite0):
    D = build(lite0, (32, 64), 8, extra_branch=True, projection_seed=5)
    assert D.state_dict()["extra_view.mix"].shape == (3, 5)
    assert D.extra_view.seed == D.extra_head.seed == 105


def test_recorded_config_rebuilds_the_same_discriminator():
    D = ProjectedDiscriminator(
        feature_network=LITE0, img_resolution=(32, 64), img_channels=5, rgb="learned",
        extra_branch=True, augment="translation",
    )  # fmt: skip
    config = part_config(D)
    kwargs = config["kwargs"]
    assert kwargs["img_resolution"] == [32, 64] and kwargs["img_channels"] == 5
    assert kwargs["rgb"] == "learned" and kwargs["extra_branch"] is True
    rebuilt = create_from_config(config)
    assert rebuilt.img_size == (32, 64) and part_config(rebuilt) == config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in D.state_dict().items()
    }


# ---------------------------------------------------------------------------- augmentations
def _every_augmentation() -> list[nn.Module]:
    special = {
        "adaptive": {"p": 1.0},
        "diffusion": {"where": "images", "p": 1.0},
    }
    return [AUGMENTATIONS.create(n, **special.get(n, {})) for n in AUGMENTATIONS.names()]


@pytest.mark.parametrize("channels", [1, 4, 5])
def test_every_augmentation_on_any_channel_count_and_non_square(channels):
    x = images(channels, (12, 20), batch=3)
    for aug in _every_augmentation():
        out = aug(x, generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == x.dtype, type(aug).__name__
        assert torch.isfinite(out).all(), type(aug).__name__


@pytest.mark.parametrize("channels", [1, 2, 4, 5])
def test_colour_ops_change_the_colour_channels_only(channels):
    x = images(channels, (8, 12), batch=3)
    k = colour_channels(channels)
    assert k == (1 if channels <= 2 else 3)
    for name in ("brightness", "saturation", "contrast", "color"):
        out = AUGMENTATIONS.create(name)(x, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[:, k:], x[:, k:]), name
        if name != "saturation" or k > 1:  # one colour channel: saturation is the identity
            assert not torch.equal(out[:, :k], x[:, :k]), name
        else:
            torch.testing.assert_close(out, x)
    # the colour channels get exactly what the same draws give an image of them alone
    color = AUGMENTATIONS.create("color")
    alone = color(x[:, :k].contiguous(), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(color(x, generator=torch.Generator().manual_seed(0))[:, :k], alone)


def test_colour_ops_keep_channels_last():
    x = images(4, (8, 12)).contiguous(memory_format=torch.channels_last)
    out = AUGMENTATIONS.create("color")(x)
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ["translation", "offset", "cutout", "diffaugment"])
def test_geometric_ops_move_all_channels_alike(name):
    base = images(1, (12, 20), batch=4)
    x = base.expand(-1, 5, -1, -1).contiguous()
    kwargs = {"policy": "translation,cutout"} if name == "diffaugment" else {}
    aug = AUGMENTATIONS.create(name, **kwargs)
    out = aug(x, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(out, x)
    assert all(torch.equal(out[:, c], out[:, 0]) for c in range(1, 5))


def test_translation_and_cutout_sizes_are_per_axis():
    h, w, batch = 16, 64, 256
    dy, dx = Translation(0.125).draw(batch, h, w, torch.device("cpu"), torch.Generator())
    assert dy.abs().max() == 2 and dx.abs().max() == 8  # round(h / 8), round(w / 8)
    out = Cutout(0.25)(torch.ones(batch, 2, h, w), generator=torch.Generator().manual_seed(0))
    holes = out[:, 0] == 0
    rows, cols = holes.any(2).sum(1), holes.any(1).sum(1)
    assert rows.max() == 4 and cols.max() == 16  # a 4 x 16 rectangle where fully inside
    assert torch.equal(holes.sum((1, 2)), rows * cols)  # always a rectangle
    assert torch.equal(out[:, 0], out[:, 1])
