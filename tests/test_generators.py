"""Generators: interface, shapes, parameter counts, conditioning, noise, StyleGAN2 internals."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F

import projected_gan
from projected_gan.generators import Generator, StyleGAN2Generator, modulated_conv2d
from projected_gan.generators.stylegan2 import fir_filter, upsample_fir
from projected_gan.registry import GENERATORS

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

SMALL = {
    "fastgan": {"ngf": 16, "z_dim": 32},
    "fastgan_lite": {"ngf": 16, "z_dim": 32},
    "stylegan2": {"channel_base": 1024, "channel_max": 64, "z_dim": 32, "w_dim": 32},
}
NAMES = list(SMALL)


def make(name: str, img_resolution: int = 32, c_dim: int = 0, **kwargs) -> Generator:
    kw = {**SMALL[name], **kwargs}
    return projected_gan.create(
        "generators", name, img_resolution=img_resolution, c_dim=c_dim, **kw
    )


def set_noise_strength(G: torch.nn.Module, value: float) -> int:
    """Give every noise layer a non-zero strength (they start at 0); returns how many."""
    n = 0
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("strength"):
                p.fill_(value)
                n += 1
    return n


@functools.cache
def default_model(name: str) -> Generator:
    """The factory defaults (256 px), on the meta device: shapes and counts without memory."""
    with torch.device("meta"):
        return projected_gan.create("generators", name)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- interface
def test_registered_names():
    assert {"fastgan", "fastgan_lite", "stylegan2"} <= set(GENERATORS.names())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("res", [32, 64])
@pytest.mark.parametrize("c_dim", [0, 4])
def test_forward_backward_shapes(name, res, c_dim):
    torch.manual_seed(0)
    G = make(name, res, c_dim)
    assert isinstance(G, Generator)
    assert (G.c_dim, G.img_resolution, G.img_channels) == (c_dim, res, 3)
    z = torch.randn(2, G.z_dim)
    c = torch.tensor([0, 3]) if c_dim else None
    img = G(z, c)
    assert img.shape == (2, 3, res, res)
    assert torch.isfinite(img).all()
    img.square().mean().backward()
    grads = [p.grad for p in G.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # Conv weights at the output and at 4x4 both receive gradient.
    assert sum(bool(g.abs().sum() > 0) for g in grads) > len(grads) // 2


@pytest.mark.parametrize("name", NAMES)
def test_grayscale(name):
    G = make(name, 32, img_channels=1)
    assert G(torch.randn(2, G.z_dim)).shape == (2, 1, 32, 32)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("res", [512, 1024])
def test_high_resolutions_conditional_shapes(name, res):
    # Shape propagation only (meta tensors): conditional 512/1024 must build and run.
    kw = {"ngf": 8} if name.startswith("fastgan") else {"channel_base": 2048, "channel_max": 32}
    G = make(name, res, c_dim=3, img_channels=1, **kw).to("meta")
    out = G(torch.randn(2, G.z_dim, device="meta"), torch.tensor([0, 2], device="meta"))
    assert out.shape == (2, 1, res, res)


@pytest.mark.parametrize("name", NAMES)
def test_mapping_then_synthesis_equals_forward(name):
    torch.manual_seed(0)
    G = make(name, 32, c_dim=3).eval()
    z, c = torch.randn(3, G.z_dim), torch.tensor([0, 1, 2])
    w = G.mapping(z, c)
    torch.testing.assert_close(G.synthesis(w, noise_mode="none"), G(z, c, noise_mode="none"))


def test_fastgan_w_is_normalised_z():
    G = make("fastgan", 32)
    z = torch.randn(4, G.z_dim) * 7
    w = G.mapping(z)
    torch.testing.assert_close(w.square().mean(dim=1), torch.ones(4))
    torch.testing.assert_close(w * z.norm(dim=1, keepdim=True) / math.sqrt(G.z_dim), z)


def test_fastgan_synthesis_renormalises_w():
    # Interpolated w (shorter than the sphere radius) are projected back like in the reference.
    G = make("fastgan_lite", 32).eval()
    w = G.mapping(torch.randn(2, G.z_dim))
    torch.testing.assert_close(G.synthesis(0.5 * w), G.synthesis(w))


# ----------------------------------------------------------------------------- counts
@pytest.mark.parametrize(("name", "expected"), [("fastgan", 105.7e6), ("fastgan_lite", 79.4e6)])
def test_fastgan_parameter_counts_at_256(name, expected):
    # Reference figures for ngf=128 at 256x256 (Projected GAN, counted from the official layers).
    assert abs(n_params(default_model(name)) - expected) / expected < 0.001


def stylegan2_param_formula(res, z_dim, w_dim, map_layers, cbase=32768, cmax=512, img_ch=3):
    """StyleGAN2 (skip G) parameter count written out from the paper's architecture."""
    ch = {r: min(cbase // r, cmax) for r in (2**k for k in range(2, int(math.log2(res)) + 1))}
    mapping = (z_dim * w_dim + w_dim) + (map_layers - 1) * (w_dim * w_dim + w_dim)

    def layer(cin, cout, k):  # affine (w -> cin, bias) + weight + noise strength + bias
        return (w_dim * cin + cin) + cout * cin * k * k + 1 + cout

    def torgb(cin):
        return (w_dim * cin + cin) + img_ch * cin + img_ch

    total = mapping + ch[4] * 16 + layer(ch[4], ch[4], 3) + torgb(ch[4])
    for r in list(ch)[1:]:
        total += layer(ch[r // 2], ch[r], 3) + layer(ch[r], ch[r], 3) + torgb(ch[r])
    return total


def test_stylegan2_param_formula_matches_published_config_f():
    # StyleGAN2 config F at 1024x1024 has 30,370,060 generator parameters.
    assert stylegan2_param_formula(1024, 512, 512, 8) == 30_370_060


@pytest.mark.parametrize(
    ("res", "kwargs", "formula_args"),
    [
        (256, {}, (64, 128, 2)),  # Projected GAN defaults: 24.6 M
        (1024, {"z_dim": 512, "w_dim": 512, "map_layers": 8}, (512, 512, 8)),  # StyleGAN2 paper
    ],
)
def test_stylegan2_parameter_counts(res, kwargs, formula_args):
    with torch.device("meta"):
        G = projected_gan.create("generators", "stylegan2", img_resolution=res, **kwargs)
    assert n_params(G) == stylegan2_param_formula(res, *formula_args)
    assert G.num_ws == 2 * int(math.log2(res)) - 2


# ----------------------------------------------------------------------------- describe
def test_describe_lists_real_defaults():
    card = GENERATORS.describe("fastgan_lite")
    for line in ("img_resolution = 256", "c_dim = 0", "z_dim = 256", "ngf = 128"):
        assert line in card
    card = GENERATORS.describe("stylegan2")
    for line in ("z_dim = 64", "w_dim = 128", "map_layers = 2", "channel_base = 32768"):
        assert line in card
    card = GENERATORS.describe("fastgan")
    assert "noise_mode = 'random'" in card and "ngf = 128" in card


@pytest.mark.parametrize("name", NAMES)
def test_factory_defaults_build_the_documented_model(name):
    G = default_model(name)
    assert G.img_resolution == 256 and G.c_dim == 0 and G.img_channels == 3
    assert G.z_dim == (64 if name == "stylegan2" else 256)


# ----------------------------------------------------------------------------- conditioning
@pytest.mark.parametrize("name", NAMES)
def test_classes_change_images_for_same_z(name):
    torch.manual_seed(0)
    G = make(name, 32, c_dim=5).eval()
    z = torch.randn(1, G.z_dim).repeat(2, 1)
    img = G(z, torch.tensor([1, 4]), noise_mode="none")
    assert (img[0] - img[1]).abs().mean() > 1e-3
    same = G(z, torch.tensor([2, 2]), noise_mode="none")
    torch.testing.assert_close(same[0], same[1])


@pytest.mark.parametrize("name", NAMES)
def test_one_hot_and_int_labels_agree(name):
    torch.manual_seed(0)
    G = make(name, 32, c_dim=5)
    z, c = torch.randn(3, G.z_dim), torch.tensor([4, 0, 2])
    G.eval()
    a = G(z, c, noise_mode="none")
    b = G(z, F.one_hot(c, 5).float(), noise_mode="none")
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_label_errors(name):
    G = make(name, 32, c_dim=5)
    z = torch.randn(2, G.z_dim)
    with pytest.raises(ValueError, match="c is required"):
        G(z)
    with pytest.raises(ValueError, match="outside"):
        G(z, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="outside"):
        G(z, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="one-hot"):
        G(z, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="integer"):
        G(z, torch.tensor([0.0, 1.0]))
    U = make(name, 32)
    with pytest.raises(ValueError, match="unconditional"):
        U(z[:, : U.z_dim], torch.tensor([0, 1]))
    assert U(z[:, : U.z_dim], torch.zeros(2, 0)).shape == (2, 3, 32, 32)  # empty labels are fine


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments_are_named(name):
    with pytest.raises(ValueError, match="img_resolution"):
        make(name, 48)
    with pytest.raises(ValueError, match="img_resolution"):
        make(name, 2048)
    for channels in (0, 17):  # 1..16 (4: RGBA is fine)
        with pytest.raises(ValueError, match="img_channels"):
            make(name, 32, img_channels=channels)
    with pytest.raises(ValueError, match="noise_mode"):
        make(name, 32, noise_mode="fixed")
    G = make(name, 32)
    with pytest.raises(ValueError, match="z must have shape"):
        G(torch.randn(2, G.z_dim + 1))
    with pytest.raises(ValueError, match="noise_mode"):
        G(torch.randn(2, G.z_dim), noise_mode="loud")


def test_fastgan_ngf_must_give_whole_channels():
    with pytest.raises(ValueError, match="ngf"):
        make("fastgan", 1024, ngf=12)
    with pytest.raises(ValueError, match="ngf"):
        make("fastgan_lite", 32, ngf=0)


# ----------------------------------------------------------------------------- noise, seeds
@pytest.mark.parametrize("name", ["fastgan", "stylegan2"])
def test_noise_modes(name):
    torch.manual_seed(0)
    G = make(name, 32).eval()
    assert set_noise_strength(G, 0.5) > 0
    z = torch.randn(2, G.z_dim)
    r1, r2 = G(z, noise_mode="random"), G(z, noise_mode="random")
    assert (r1 - r2).abs().max() > 1e-4  # fresh noise every forward
    torch.testing.assert_close(G(z, noise_mode="const"), G(z, noise_mode="const"))
    n1 = G(z, noise_mode="none")
    set_noise_strength(G, 0.0)
    torch.testing.assert_close(n1, G(z, noise_mode="random"))


def test_fastgan_lite_has_no_noise():
    assert set_noise_strength(make("fastgan_lite", 64), 1.0) == 0


def test_noise_starts_at_zero():
    G = make("fastgan", 32).eval()
    z = torch.randn(2, G.z_dim)
    torch.testing.assert_close(G(z, noise_mode="random"), G(z, noise_mode="none"))


@pytest.mark.parametrize("name", NAMES)
def test_global_seed_makes_forward_deterministic(name):
    G = make(name, 32, mixing_prob=0.5) if name == "stylegan2" else make(name, 32)
    set_noise_strength(G, 0.5)
    # Training-mode forwards update spectral-norm and BN state, so run two identical copies.
    twin = copy.deepcopy(G)
    outs = []
    for model in (G, twin):
        torch.manual_seed(123)
        outs.append(model(torch.randn(2, G.z_dim)))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.manual_seed(124)
    assert (twin(torch.randn(2, G.z_dim)) - outs[1]).abs().max() > 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_sample_depends_on_generator_only(name):
    G = make(name, 32, c_dim=3).eval()
    set_noise_strength(G, 0.5)
    with torch.no_grad():
        torch.manual_seed(1)
        a = G.sample(3, generator=torch.Generator().manual_seed(7))
        state = torch.get_rng_state()
        b = G.sample(3, generator=torch.Generator().manual_seed(7))
        assert torch.equal(state, torch.get_rng_state())  # caller's RNG stream untouched
        c = G.sample(3, generator=torch.Generator().manual_seed(8))
        d = G.sample(3, c=2)
    assert a.shape == (3, 3, 32, 32) and d.shape == (3, 3, 32, 32)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3


def test_random_labels_refused_when_unconditional():
    with pytest.raises(ValueError, match="unconditional"):
        make("fastgan_lite", 32).random_labels(2)


# ----------------------------------------------------------------------------- precision, layout
@pytest.mark.parametrize("name", NAMES)
def test_channels_last_and_bf16_autocast(name):
    torch.manual_seed(0)
    G = make(name, 32, c_dim=3).eval()
    z, c = torch.randn(2, G.z_dim), torch.tensor([0, 2])
    ref = G(z, c, noise_mode="none")
    G = G.to(memory_format=torch.channels_last)
    torch.testing.assert_close(G(z, c, noise_mode="none"), ref, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = G(z, c, noise_mode="none")
    assert low.dtype == torch.bfloat16
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.05
    G.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        G(z, c).float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)


# ----------------------------------------------------------------------------- StyleGAN2 internals
def reference_modconv(x, weight, styles, demodulate, up):
    """Per-sample loop with explicitly modulated weights; up = transposed conv, then FIR blur."""
    outs = []
    fir = fir_filter() * 4
    for i in range(x.shape[0]):
        w = weight * styles[i][None, :, None, None]
        if demodulate:
            w = w / w.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        xi = x[i : i + 1]
        if up:
            y = F.conv_transpose2d(xi, w.transpose(0, 1), stride=2)  # (2H + 1) x (2W + 1)
            o = y.shape[1]
            y = F.conv2d(y, fir[None, None].expand(o, 1, 4, 4), padding=1, groups=o)
        else:
            y = F.conv2d(xi, w, padding=weight.shape[-1] // 2)
        outs.append(y)
    return torch.cat(outs)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize(
    ("up", "k", "demodulate"), [(False, 3, True), (True, 3, True), (False, 1, False)]
)
def test_modulated_conv_matches_per_sample_reference(fused, up, k, demodulate):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 6, 6)
    weight = torch.randn(4, 5, k, k)
    styles = torch.randn(3, 5)
    fir = fir_filter() if up else None
    out = modulated_conv2d(x, weight, styles, demodulate=demodulate, up_fir=fir, fused=fused)
    ref = reference_modconv(x, weight, styles, demodulate, up)
    assert out.shape == ((3, 4, 12, 12) if up else (3, 4, 6, 6))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_fir_upsample_is_bilinear_in_the_interior():
    # [1,3,3,1] x2 up-sampling weights neighbours 3/4 and 1/4, exactly half-pixel bilinear.
    x = torch.randn(2, 3, 8, 8)
    up = upsample_fir(x, fir_filter())
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert up.shape == (2, 3, 16, 16)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], bilinear[..., 1:-1, 1:-1])


def test_fused_and_unfused_generators_agree():
    torch.manual_seed(0)
    A = make("stylegan2", 32, c_dim=3).eval()
    B = make("stylegan2", 32, c_dim=3, fused_modconv=True).eval()
    B.load_state_dict(A.state_dict())
    set_noise_strength(A, 0.3)
    set_noise_strength(B, 0.3)
    z, c = torch.randn(2, A.z_dim), torch.tensor([1, 2])
    torch.testing.assert_close(A(z, c, noise_mode="const"), B(z, c, noise_mode="const"))


def test_equalized_lr_mapping_layers():
    G = make("stylegan2", 32)
    layer = G.mapping_network.layers[0]
    assert layer.weight_gain == pytest.approx(0.01 / math.sqrt(G.z_dim))
    assert float(layer.weight.detach().std()) == pytest.approx(
        100, rel=0.2
    )  # stored at N(0, 1) / lr_multiplier


def test_w_avg_tracking_and_truncation():
    torch.manual_seed(0)
    G: StyleGAN2Generator = make("stylegan2", 32)
    assert torch.count_nonzero(G.mapping_network.w_avg) == 0
    z = torch.randn(8, G.z_dim)
    G.train()
    w = G.mapping(z)[:, 0]
    torch.testing.assert_close(G.mapping_network.w_avg, (1 - 0.998) * w.detach().mean(0))
    G.eval()
    before = G.mapping_network.w_avg.clone()
    G.mapping(torch.randn(8, G.z_dim))
    assert torch.equal(before, G.mapping_network.w_avg)  # frozen in eval mode
    # psi = 0 collapses every z onto the average w.
    img = G(torch.randn(3, G.z_dim), truncation_psi=0.0, noise_mode="none")
    torch.testing.assert_close(img[0], img[1])
    torch.testing.assert_close(img, G.synthesis(before.expand(3, -1), noise_mode="none"))
    ws_half = G.mapping(z, truncation_psi=0.5)
    torch.testing.assert_close(ws_half, before + 0.5 * (G.mapping(z) - before))


def test_style_mixing_only_in_training():
    torch.manual_seed(0)
    G = make("stylegan2", 32, mixing_prob=1.0)
    seen = []
    G.synthesis_network.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    z = torch.randn(4, G.z_dim)
    G.train()
    G(z)
    G.eval()
    G(z)
    mixed, plain = seen
    layer0_same = mixed[:, :1].expand_as(mixed)
    # Every sample switches to a different w at some cutoff >= 1, and keeps its own w before it.
    assert all((mixed[i] - layer0_same[i]).abs().amax(dim=1).max() > 1e-4 for i in range(4))
    torch.testing.assert_close(mixed[:, 0], plain[:, 0])
    torch.testing.assert_close(plain, plain[:, :1].expand_as(plain))


def test_stylegan2_paper_config_reachable():
    with torch.device("meta"):
        G = projected_gan.create(
            "generators", "stylegan2", img_resolution=1024, z_dim=512, w_dim=512, map_layers=8
        )
    assert len(G.mapping_network.layers) == 8 and G.w_dim == 512 and G.num_ws == 18
    assert G.synthesis_network.channels[1024] == 32 and G.synthesis_network.channels[64] == 512
