"""SAN heads: the normalised last layer, split logits and their gradient routing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import projected_gan
from projected_gan import ExperimentSpec, SplitLogits, create_from_config, part_config
from projected_gan.discriminators import (
    MultiScaleDiscriminator,
    ProjectedDiscriminator,
    SANConv2d,
    ScaleDiscriminator,
    san_project,
)
from projected_gan.errors import PartBuildError

SAN_SPEC = "discriminator.discriminator={name: multiscale, san: true}"
# two scales, small: 16 px (one down block) and 8 px (the final conv only)
CHANNELS, REDUCTIONS, IMAGE_SIZE = (8, 16), (2, 4), 32


def maps(disc: MultiScaleDiscriminator, batch: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, c, *s, generator=g) for c, s in zip(disc.channels, disc.sizes)]


def zero_grads(module: nn.Module) -> None:
    for p in module.parameters():
        p.grad = None


def has_grad(p: torch.Tensor) -> bool:
    return p.grad is not None and p.grad.abs().sum() > 0


def radial_and_tangent(grad: torch.Tensor, weight: torch.Tensor) -> tuple[float, float]:
    """Largest |component| of ``grad`` along and across each output channel's weight."""
    g, w = grad.flatten(1), F.normalize(weight.detach().flatten(1), dim=1)
    along = (g * w).sum(1, keepdim=True)
    return along.abs().max().item(), (g - along * w).abs().max().item()


# ------------------------------------------------------------------------------ SANConv2d
def san_conv_3_4() -> SANConv2d:
    """1 output, 2 input channels, 1x1 kernel, w = (3, 4): s = 5, omega = (0.6, 0.8)."""
    conv = SANConv2d(2, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([3.0, 4.0]).view(1, 2, 1, 1))
    return conv


def test_san_conv_hand_computed_values():
    conv = san_conv_3_4()
    scale, omega = conv.scale_and_direction()
    torch.testing.assert_close(scale, torch.tensor([5.0]))
    torch.testing.assert_close(omega.flatten(), torch.tensor([0.6, 0.8]))
    x = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    out = conv(x)  # 5 * (0.6 * 1 + 0.8 * 2) = 3 * 1 + 4 * 2 = 11
    torch.testing.assert_close(out, torch.tensor([[[[11.0]]]]))
    fun, dir_ = conv(x, split=True)
    assert fun.item() == pytest.approx(11.0) and dir_.item() == pytest.approx(11.0)


def test_san_conv_4x4_equals_the_plain_conv_with_the_same_weight():
    conv = SANConv2d(2, 2, 4)
    w = torch.zeros(2, 2, 4, 4)
    w[0, 0, 0, 0], w[0, 1, 3, 3] = 1.0, -2.0  # channel 0: norm sqrt(5)
    w[1, 0, 1, 2], w[1, 1, 2, 1], w[1, 1, 0, 3] = 2.0, 3.0, 6.0  # channel 1: norm 7
    with torch.no_grad():
        conv.weight.copy_(w)
    plain = nn.Conv2d(2, 2, 4, bias=False)
    with torch.no_grad():
        plain.weight.copy_(w)
    scale, omega = conv.scale_and_direction()
    torch.testing.assert_close(scale, torch.tensor([math.sqrt(5.0), 7.0]))
    torch.testing.assert_close(omega[1, 1, 2, 1], torch.tensor(3.0 / 7.0))
    x = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(conv(x), plain(x))
    # by hand at output (0, 0) of the first sample: x[0,0,0,0] - 2 x[0,1,3,3]
    assert conv(x)[0, 0, 0, 0].item() == pytest.approx((x[0, 0, 0, 0] - 2 * x[0, 1, 3, 3]).item())
    fun, dir_ = conv(x, split=True)
    torch.testing.assert_close(fun, plain(x))
    torch.testing.assert_close(dir_, plain(x))


def test_split_gradients_by_hand():
    # fun = s <omega.detach(), x>: d/dx = w = (3, 4); d/dw = <omega, x> ds/dw = 2.2 * omega.
    conv, x = san_conv_3_4(), torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).requires_grad_()
    fun, _ = conv(x, split=True)
    fun.sum().backward()
    torch.testing.assert_close(x.grad.flatten(), torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(conv.weight.grad.flatten(), torch.tensor([1.32, 1.76]))  # || w
    # dir = s.detach() <omega, x.detach()>: no input grad; d/dw = x - <omega, x> omega (_|_ w).
    conv, x = san_conv_3_4(), torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).requires_grad_()
    _, dir_ = conv(x, split=True)
    dir_.sum().backward()
    assert x.grad is None
    torch.testing.assert_close(conv.weight.grad.flatten(), torch.tensor([-0.32, 0.24]))
    # together: the plain conv's weight gradient, x = (1, 2)
    assert (torch.tensor([1.32, 1.76]) + torch.tensor([-0.32, 0.24])).tolist() == pytest.approx(
        [1.0, 2.0]
    )


def test_split_gradients_are_radial_for_fun_and_tangent_for_dir():
    conv = SANConv2d(3, 2, 4)
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1)).requires_grad_()
    fun, dir_ = conv(x, split=True)
    fun.square().sum().backward(retain_graph=True)
    along, across = radial_and_tangent(conv.weight.grad, conv.weight)
    assert along > 1e-3 and across < 1e-5 * along
    assert has_grad(x)
    fun_grad, x.grad, conv.weight.grad = conv.weight.grad.clone(), None, None
    dir_.square().sum().backward()
    along, across = radial_and_tangent(conv.weight.grad, conv.weight)
    assert across > 1e-3 and along < 1e-5 * across
    assert x.grad is None
    # the two halves add up to the plain layer's gradient
    plain_conv = SANConv2d(3, 2, 4)
    plain_conv.load_state_dict(conv.state_dict())
    plain_conv(x.detach()).square().sum().backward()
    torch.testing.assert_close(fun_grad + conv.weight.grad, plain_conv.weight.grad)


# --------------------------------------------------------------------------- conditional
def test_san_project_by_hand():
    # h = (1, 2), cmap = (3, 4) -> omega = (0.6, 0.8), scale 1/sqrt(2): logit 2.2 / sqrt(2)
    h = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).requires_grad_()
    cmap = torch.tensor([[3.0, 4.0]], requires_grad=True)
    r = 2**-0.5
    assert san_project(h, cmap, scale=r).item() == pytest.approx(2.2 * r)
    fun, dir_ = san_project(h, cmap, split=True, scale=r)
    assert fun.item() == pytest.approx(2.2 * r) and dir_.item() == pytest.approx(2.2 * r)
    fun.sum().backward()
    torch.testing.assert_close(h.grad.flatten(), torch.tensor([0.6, 0.8]) * r)
    assert cmap.grad is None
    h.grad = None
    dir_.sum().backward()
    assert h.grad is None
    # d/dcmap <h, cmap/|cmap|> = (h - <h, omega> omega) / |cmap| = (-0.32, 0.24) / 5
    torch.testing.assert_close(cmap.grad.flatten(), torch.tensor([-0.064, 0.048]) * r)


def test_conditional_san_heads_normalise_the_class_map():
    disc = MultiScaleDiscriminator(
        CHANNELS, REDUCTIONS, IMAGE_SIZE, num_classes=3, cmap_dim=8, san=True
    ).eval()
    # the final convs stay spectral-normed cmap_dim-channel convs: the class map is the direction
    assert not any(isinstance(m, SANConv2d) for m in disc.modules())
    assert all(parametrize.is_parametrized(d.main[-1], "weight") for d in disc.discs)
    feats, labels = maps(disc), torch.tensor([0, 2, 1])
    with torch.no_grad():
        expected = []
        for d, embed, x in zip(disc.discs, disc.embeds, feats):
            h, cmap = d(x), embed(labels)
            omega = cmap / cmap.norm(dim=1, keepdim=True)
            expected.append((h * omega[:, :, None, None]).sum(1).flatten(1) / math.sqrt(8))
        expected = torch.cat(expected, 1)
        torch.testing.assert_close(disc(feats, labels), expected)
    fun, dir_ = disc(feats, labels, split=True)
    torch.testing.assert_close(fun, expected)
    torch.testing.assert_close(dir_, expected)
    final = [d.main[-1].parametrizations.weight.original for d in disc.discs]
    embeds = list(disc.embeds.parameters())
    fun.sum().backward(retain_graph=True)
    assert all(has_grad(p) for p in final) and not any(has_grad(p) for p in embeds)
    zero_grads(disc)
    dir_.sum().backward()
    assert not any(has_grad(p) for p in final) and all(has_grad(p) for p in embeds)


# ------------------------------------------------------------------- multi-scale heads
def test_unconditional_san_heads_same_logits_split_and_routing():
    plain = MultiScaleDiscriminator(CHANNELS, REDUCTIONS, IMAGE_SIZE)
    disc = MultiScaleDiscriminator(CHANNELS, REDUCTIONS, IMAGE_SIZE, san=True).eval()
    assert disc.splits_logits and not plain.splits_logits
    finals = [d.main[-1] for d in disc.discs]
    assert all(isinstance(f, SANConv2d) and not parametrize.is_parametrized(f) for f in finals)
    assert parametrize.is_parametrized(disc.discs[0].main[0][0], "weight")  # blocks keep SN
    feats = maps(disc)
    logits = disc(feats)
    assert logits.shape == plain.eval()(feats).shape == (3, disc.num_logits)
    split = disc(feats, split=True)
    assert isinstance(split, SplitLogits)
    torch.testing.assert_close(split.fun, logits.detach())
    torch.testing.assert_close(split.dir, logits.detach())
    block = list(disc.discs[0].main[0].parameters())
    split.fun.square().sum().backward(retain_graph=True)
    assert all(has_grad(p) for p in block)
    for f in finals:
        along, across = radial_and_tangent(f.weight.grad, f.weight)
        assert along > 0 and across < 1e-5 * along
    zero_grads(disc)
    split.dir.square().sum().backward()
    assert not any(has_grad(p) for p in block)
    for f in finals:
        along, across = radial_and_tangent(f.weight.grad, f.weight)
        assert across > 0 and along < 1e-5 * across
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = disc(feats, split=True)
    assert low.fun.dtype == torch.bfloat16 and torch.isfinite(low.dir).all()


def test_split_on_plain_heads_is_refused():
    plain = MultiScaleDiscriminator(CHANNELS, REDUCTIONS, IMAGE_SIZE)
    with pytest.raises(ValueError, match="san=True"):
        plain(maps(plain), split=True)
    with pytest.raises(ValueError, match="san=True"):
        ScaleDiscriminator(8, 8)(torch.randn(1, 8, 8, 8), split=True)
    assert ScaleDiscriminator(8, 8, san=True)(torch.randn(1, 8, 8, 8), split=True).fun.shape == (
        1,
        1,
        5,
        5,
    )


def test_registry_card_explains_san():
    card = projected_gan.DISCRIMINATORS.describe("multiscale")
    assert "san = False" in card and "Takida" in card


# -------------------------------------------------------------- ProjectedDiscriminator
@pytest.fixture(scope="module")
def san_d() -> ProjectedDiscriminator:
    return ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "input_size": 64, "pretrained": False},
        discriminator={"name": "multiscale", "san": True},
        augment=None,
        img_resolution=32,
    ).eval()


def test_projected_discriminator_split(san_d):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert san_d.splits_logits
    with torch.no_grad():
        logits = san_d(x)
        split = san_d(x, split=True)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, san_d.discriminator.num_logits)
    assert isinstance(split, SplitLogits)
    torch.testing.assert_close(split.fun, logits)
    torch.testing.assert_close(split.dir, logits)
    plain = ProjectedDiscriminator(projector=san_d.projector, augment=None, img_resolution=32)
    assert not plain.splits_logits
    with pytest.raises(ValueError, match="SAN heads"):
        plain(x, split=True)
    # several networks: fun and dir concatenated separately, in network order
    two = ProjectedDiscriminator(
        projector=[san_d.projector, san_d.projector],
        discriminator=[{"name": "multiscale", "san": True}] * 2,
        augment=None,
        img_resolution=32,
    ).eval()
    with torch.no_grad():
        fun, dir_ = two(x, split=True)
        feats = san_d.projector(x)
        per_net = [d(feats, split=True) for d in two.discriminators]
    torch.testing.assert_close(fun, torch.cat([p.fun for p in per_net], 1))
    torch.testing.assert_close(dir_, torch.cat([p.dir for p in per_net], 1))
    with pytest.raises(PartBuildError, match="all be SAN heads or none"):
        ProjectedDiscriminator(
            projector=[san_d.projector, san_d.projector],
            discriminator=[{"name": "multiscale", "san": True}, "multiscale"],
            img_resolution=32,
        )


def test_recorded_config_rebuilds_the_san_discriminator(san_d):
    config = part_config(san_d)
    assert config["kwargs"]["discriminator"]["san"] is True
    rebuilt = create_from_config(config)
    rebuilt.load_state_dict(san_d.state_dict())  # strict
    assert rebuilt.splits_logits
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x, split=True).dir, san_d(x))


def test_spec_turns_san_on():
    spec = ExperimentSpec.load(preset="minimal_cpu", overrides=[SAN_SPEC])
    head = spec.discriminator.discriminator
    assert head.name == "multiscale" and head.kwargs == {"san": True}
    default = ExperimentSpec.load(preset="minimal_cpu")
    assert default.discriminator.discriminator.kwargs == {}
