"""Generators at H x W sizes and 1-16 channels: the size rule, shapes, noise, and squares unchanged.

Every family (FastGAN, FastGAN-lite, StyleGAN2) follows one rule (``check_image_size``): the short
side one of 32 ... 1024, the long side a multiple of a quarter of it, at most 4x. Squares must keep
exactly the parameters, buffers and outputs they had before non-square sizes existed: the pins
below were computed with the code before that change.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import projected_gan
from projected_gan.generators import Generator, check_image_size, first_block_size
from tests.test_generators import NAMES, set_noise_strength

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

# Smaller than test_generators.SMALL; the square pins below were taken at these sizes.
_FASTGAN_TINY = {"ngf": 8, "z_dim": 16}
TINY = {
    "fastgan": _FASTGAN_TINY,
    "fastgan_lite": _FASTGAN_TINY,
    "stylegan2": {"channel_base": 256, "channel_max": 16, "z_dim": 16, "w_dim": 16},
}


def make(name: str, size, channels: int = 3, c_dim: int = 0, **kwargs) -> Generator:
    kw = {**TINY[name], **kwargs}
    return projected_gan.create(
        "generators", name, img_resolution=size, img_channels=channels, c_dim=c_dim, **kw
    )


# ------------------------------------------------------------------------------ the size rule
@pytest.mark.parametrize(
    ("size", "first"),
    [
        (64, (4, 4)),
        ((64, 64), (4, 4)),
        ((64, 96), (4, 6)),
        ((32, 64), (4, 8)),
        ((64, 32), (8, 4)),
        ((64, 80), (4, 5)),  # 80 = 5 quarters of 64
        ((32, 128), (4, 16)),  # 4x, the widest
        ((1024, 256), (16, 4)),
    ],
)
def test_first_block_follows_the_aspect(size, first):
    assert first_block_size(size) == first


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        ((64, 88), "64x88"),  # 88 is not a multiple of 64 / 4
        ((64, 512), "64x512"),  # 8x the short side
        ((64, 72), "64x72"),
        (48, "img_resolution 48 "),
        ((48, 48), "img_resolution 48 "),
        ((48, 96), "48x96"),  # the short side is not a supported resolution
        (2048, "2048"),
    ],
)
def test_unsupported_sizes_are_refused_in_one_line(size, shown):
    for name in NAMES:
        with pytest.raises(ValueError) as info:
            make(name, size)
        message = str(info.value)
        assert "\n" not in message
        assert "img_resolution" in message and shown in message
        assert "multiple of a quarter of the short side" in message and "[64, 96]" in message


@pytest.mark.parametrize("bad", ["64", 64.0, (64,), (64, 96, 3), (0, 64), True])
def test_sizes_that_are_not_sizes_are_refused(bad):
    with pytest.raises(ValueError, match=r"img_resolution must be one side or \[height, width\]"):
        check_image_size(bad)


def test_img_resolution_is_stored_normalised():
    G = make("fastgan_lite", [64, 64])
    assert G.img_resolution == 64 and G.img_size == (64, 64)  # a square stays an int
    G = make("fastgan_lite", [32, 64])
    assert G.img_resolution == (32, 64) and G.img_size == (32, 64)
    assert "img_resolution=(32, 64)" in repr(G)


@pytest.mark.parametrize("name", NAMES)
def test_img_channels_from_1_to_16(name):
    assert make(name, 32, channels=16)(torch.randn(1, 16)).shape == (1, 16, 32, 32)
    for bad in (0, 17, 2.0, True):
        with pytest.raises(ValueError, match=r"img_channels must be an int in 1\.\.16"):
            make(name, 32, channels=bad)


# ------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(32, 64), (64, 32), (64, 96)])
@pytest.mark.parametrize(("channels", "c_dim"), [(1, 0), (4, 3)])
def test_shapes_at_non_square_sizes(name, size, channels, c_dim):
    torch.manual_seed(0)
    G = make(name, size, channels, c_dim).eval()
    h, w = size
    z = torch.randn(3, G.z_dim)
    c = torch.tensor([0, 2, 1]) if c_dim else None
    with torch.no_grad():
        ws = G.mapping(z, c)
        images = G.synthesis(ws, noise_mode="const")
        assert images.shape == (3, channels, h, w)
        assert torch.equal(G(z, c, noise_mode="const"), images)
        assert G.sample(2, torch.Generator().manual_seed(1)).shape == (2, channels, h, w)
    # every noise buffer is the size of the maps it is added to: (h0, w0) times the stage
    h0, w0 = first_block_size(size)
    first = {"fastgan": 8, "fastgan_lite": None, "stylegan2": 4}[name]
    stages = [] if first is None else [s for s in (4, 8, 16, 32, 64) if first <= s <= min(h, w)]
    expected = {(h0 * s // 4, w0 * s // 4) for s in stages}
    found = {tuple(b.shape[-2:]) for n, b in G.named_buffers() if n.endswith("noise_const")}
    assert found == expected


@pytest.mark.parametrize("name", NAMES)
def test_noise_modes_at_a_non_square_size(name):
    G = make(name, (32, 64), channels=4).eval()
    if name == "fastgan_lite":
        assert set_noise_strength(G, 1.0) == 0  # small up-blocks have no noise layers
        return
    assert set_noise_strength(G, 1.0) > 0
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        const = G(z, noise_mode="const")
        assert torch.equal(const, G(z, noise_mode="const"))
        assert not torch.equal(G(z, noise_mode="random"), G(z, noise_mode="random"))
        assert not torch.allclose(G(z, noise_mode="none"), const)
        assert const.shape == (2, 4, 32, 64)


def test_first_blocks_have_the_aspect():
    G = make("fastgan", (64, 96))
    assert G.init.conv.weight.shape[-2:] == (4, 6)
    assert G.init(torch.randn(2, G.z_dim)).shape[-2:] == (4, 6)
    assert list(G.up) == ["8", "16", "32", "64"]  # stages keyed by the short side, as for squares
    S = make("stylegan2", (64, 32))
    assert S.synthesis_network.blocks[0].const.shape[-2:] == (8, 4)
    assert [b.size for b in S.synthesis_network.blocks] == [(8, 4), (16, 8), (32, 16), (64, 32)]


def test_stylegan2_style_mixing_at_a_non_square_size():
    G = make("stylegan2", (64, 96), channels=1, mixing_prob=1.0).train()
    assert G(torch.randn(2, G.z_dim)).shape == (2, 1, 64, 96)


def test_grids_draw_fewer_images_of_more_pixels():
    from projected_gan.generators.sampling import grid_latents

    for size, n in ((32, 64), ((32, 64), 64), ((64, 96), 32), ((64, 256), 32)):
        z, _ = grid_latents(make("fastgan_lite", size), 0, torch.device("cpu"))
        assert z.shape[0] == n, size


# ------------------------------------------------------------------------------ squares pinned
# Computed before non-square sizes existed: ngf 16 / channel_base 1024, channel_max 64, z_dim 32
# (w_dim 32), 32x32 RGB, c_dim 0 or 3. Digest: sha256 of the sorted [name, shape] JSON list.
PINNED_SHAPES = {
    ("fastgan", 0): (72, "a4ac8176faae549a"),
    ("fastgan", 3): (109, "44dbf0d7a7e68006"),
    ("fastgan_lite", 0): (36, "350413740aa50772"),
    ("fastgan_lite", 3): (55, "8c9b632469918ff7"),
    ("stylegan2", 0): (64, "2914a87270fb15e7"),
    ("stylegan2", 3): (65, "8a75c036bdbeb7ad"),
}
# Sum and sum of |x| of G(z, c, noise_mode="const") with torch.manual_seed(0) before building,
# every noise strength 0.3, torch.manual_seed(1) before z = randn(2, 32), c = [0, 2].
PINNED_OUTPUTS = {
    ("fastgan", 0): (85.46859142975882, 537.1034462563694),
    ("fastgan", 3): (-515.7491449383087, 1082.2388883293606),
    ("fastgan_lite", 0): (41.61197489465121, 163.7514302605996),
    ("fastgan_lite", 3): (-835.4941450962797, 1241.7469468275085),
    ("stylegan2", 0): (203.8180631082505, 5939.726103011519),
    ("stylegan2", 3): (2792.629057401791, 5208.296778345481),
}
PINNED_SIZES = {
    "fastgan": {"ngf": 16, "z_dim": 32},
    "fastgan_lite": {"ngf": 16, "z_dim": 32},
    "stylegan2": {"channel_base": 1024, "channel_max": 64, "z_dim": 32, "w_dim": 32},
}
# The whole FastGAN-lite state dict, for readable failures.
FASTGAN_LITE_32 = {
    "init.conv.parametrizations.weight.original": (32, 512, 4, 4),
    "init.conv.parametrizations.weight.0._u": (512,),
    "init.conv.parametrizations.weight.0._v": (512,),
    "init.norm.weight": (512,),
    "init.norm.bias": (512,),
    "init.norm.running_mean": (512,),
    "init.norm.running_var": (512,),
    "init.norm.num_batches_tracked": (),
    **{
        f"up.{res}.{k}": shape
        for res, ch in ((8, 256), (16, 128), (32, 64))
        for k, shape in {
            "convs.0.parametrizations.weight.original": (ch, ch, 3, 3),
            "convs.0.parametrizations.weight.0._u": (ch,),
            "convs.0.parametrizations.weight.0._v": (ch * 9,),
            "norms.0.weight": (ch,),
            "norms.0.bias": (ch,),
            "norms.0.running_mean": (ch,),
            "norms.0.running_var": (ch,),
            "norms.0.num_batches_tracked": (),
        }.items()
    },
    "to_rgb.bias": (3,),
    "to_rgb.parametrizations.weight.original": (3, 32, 3, 3),
    "to_rgb.parametrizations.weight.0._u": (3,),
    "to_rgb.parametrizations.weight.0._v": (288,),
}


def _pinned_model(name: str, c_dim: int) -> Generator:
    torch.manual_seed(0)
    return projected_gan.create(
        "generators", name, img_resolution=32, c_dim=c_dim, img_channels=3, **PINNED_SIZES[name]
    ).eval()


def _digest(G: torch.nn.Module) -> tuple[int, str]:
    shapes = sorted((k, list(v.shape)) for k, v in G.state_dict().items())
    return len(shapes), hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16]


@pytest.mark.parametrize(("name", "c_dim"), list(PINNED_SHAPES))
def test_square_state_dicts_and_outputs_are_unchanged(name, c_dim):
    G = _pinned_model(name, c_dim)
    assert _digest(G) == PINNED_SHAPES[name, c_dim]
    if (name, c_dim) == ("fastgan_lite", 0):
        assert {k: tuple(v.shape) for k, v in G.state_dict().items()} == FASTGAN_LITE_32
    set_noise_strength(G, 0.3)
    torch.manual_seed(1)
    z = torch.randn(2, 32)
    c = torch.tensor([0, 2]) if c_dim else None
    with torch.no_grad():
        images = G(z, c, noise_mode="const").double()
    total, absolute = PINNED_OUTPUTS[name, c_dim]
    assert float(images.sum()) == pytest.approx(total, rel=1e-4, abs=1e-3)
    assert float(images.abs().sum()) == pytest.approx(absolute, rel=1e-4)
