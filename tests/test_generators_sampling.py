"""Inference helpers: seeds, latents, slerp/lerp, interpolation frames."""

from __future__ import annotations

import math

import pytest
import torch

import projected_gan
from projected_gan.generators import (
    interpolation_frames,
    latents_from_seeds,
    lerp,
    parse_seeds,
    slerp,
)

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def tiny(name: str, c_dim: int = 0):
    torch.manual_seed(0)
    kw = (
        {"ngf": 16, "z_dim": 32}
        if name.startswith("fastgan")
        else {"channel_base": 1024, "channel_max": 64, "z_dim": 32, "w_dim": 32}
    )
    return projected_gan.create("generators", name, img_resolution=32, c_dim=c_dim, **kw).eval()


# ----------------------------------------------------------------------------- seeds
def test_parse_seeds():
    assert parse_seeds("0-7,12") == [0, 1, 2, 3, 4, 5, 6, 7, 12]
    assert parse_seeds(" 3 , 1-2 ") == [3, 1, 2]
    assert parse_seeds("5") == [5]
    assert parse_seeds("4-4") == [4]


@pytest.mark.parametrize("bad", ["", "1,,2", "a", "3-1", "-2", "1-2-3", "1.5"])
def test_parse_seeds_rejects(bad):
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds(bad)


def test_latents_from_seeds_are_per_seed():
    z = latents_from_seeds([5, 9], 16)
    alone = latents_from_seeds([5], 16)
    other = latents_from_seeds([1, 2, 3, 5], 16)
    assert z.shape == (2, 16) and z.dtype == torch.float32
    torch.testing.assert_close(z[0], alone[0], rtol=0, atol=0)
    torch.testing.assert_close(z[0], other[3], rtol=0, atol=0)
    assert not torch.equal(z[0], z[1])
    # Independent of the global RNG.
    torch.manual_seed(0)
    a = latents_from_seeds([5], 16)
    torch.manual_seed(1)
    torch.testing.assert_close(a, latents_from_seeds([5], 16), rtol=0, atol=0)


@pytest.mark.parametrize("bad", [[-1], [1.5], [True], []])
def test_latents_from_seeds_rejects(bad):
    with pytest.raises(ValueError, match="seed"):
        latents_from_seeds(bad, 4)


# ----------------------------------------------------------------------------- interpolation
def test_lerp_and_slerp_endpoints():
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    for f in (lerp, slerp):
        torch.testing.assert_close(f(a, b, 0.0), a)
        torch.testing.assert_close(f(a, b, 1.0), b)


def test_slerp_moves_on_the_sphere():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    mid = slerp(a, b, 0.5)
    torch.testing.assert_close(mid, torch.tensor([[1.0, 1.0]]) / math.sqrt(2))
    # Equal-norm vectors keep their norm all the way (lerp would shrink it).
    x, y = torch.randn(5, 64), torch.randn(5, 64)
    y = y * (x.norm(dim=-1, keepdim=True) / y.norm(dim=-1, keepdim=True))
    t = torch.linspace(0, 1, 5)[:, None]
    torch.testing.assert_close(slerp(x, y, t).norm(dim=-1), x.norm(dim=-1))
    assert (lerp(x, y, 0.5).norm(dim=-1) < x.norm(dim=-1)).all()


def test_slerp_parallel_inputs_fall_back_to_lerp():
    a = torch.tensor([[1.0, 2.0, 3.0]])
    out = slerp(a, 2 * a, 0.5)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, 1.5 * a)


@pytest.mark.parametrize("name", ["fastgan_lite", "stylegan2"])
@pytest.mark.parametrize("space", ["w", "z"])
def test_interpolation_frames_hit_the_keyframes(name, space):
    G = tiny(name)
    seeds = [3, 7, 11]
    batches = list(interpolation_frames(G, seeds, frames_per_pair=4, space=space, batch_size=3))
    frames = torch.cat(batches)
    assert [b.shape[0] for b in batches] == [3, 3, 3]  # 2 pairs * 4 + final keyframe = 9
    assert frames.shape == (9, 3, 32, 32)
    with torch.no_grad():
        keys = G(latents_from_seeds(seeds, G.z_dim), noise_mode="const")
    torch.testing.assert_close(frames[[0, 4, 8]], keys, rtol=1e-4, atol=1e-4)
    # In-between frames are new images, not copies of the keyframes.
    assert (frames[2] - keys[0]).abs().max() > 1e-4 and (frames[2] - keys[1]).abs().max() > 1e-4


def test_interpolation_loop_returns_to_start():
    G = tiny("stylegan2")
    frames = torch.cat(list(interpolation_frames(G, [1, 2], frames_per_pair=3, loop=True)))
    assert frames.shape[0] == 6
    with torch.no_grad():
        first = G(latents_from_seeds([1], G.z_dim), noise_mode="const")
    torch.testing.assert_close(frames[:1], first, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["fastgan_lite", "stylegan2"])
def test_interpolation_with_classes(name):
    G = tiny(name, c_dim=4)
    frames = torch.cat(list(interpolation_frames(G, [1, 2], 2, c=[0, 3])))
    with torch.no_grad():
        ends = G(latents_from_seeds([1, 2], G.z_dim), torch.tensor([0, 3]), noise_mode="const")
    torch.testing.assert_close(frames[[0, 2]], ends, rtol=1e-4, atol=1e-4)
    one_class = torch.cat(list(interpolation_frames(G, [1, 2], 2, space="z", c=1)))
    assert one_class.shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="c is required"):
        next(interpolation_frames(G, [1, 2], 2))
    with pytest.raises(ValueError, match="outside"):
        next(interpolation_frames(G, [1, 2], 2, c=4))


def test_interpolation_argument_errors():
    G = tiny("fastgan_lite")
    with pytest.raises(ValueError, match="space"):
        next(interpolation_frames(G, [1, 2], 2, space="x"))
    with pytest.raises(ValueError, match="frames_per_pair"):
        next(interpolation_frames(G, [1, 2], 0))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        next(interpolation_frames(G, [1], 2))
    with pytest.raises(ValueError, match="unconditional"):
        next(interpolation_frames(G, [1, 2], 2, c=0))


# ----------------------------------------------------------------- generate / interpolate at H x W
def exported(tmp_path, size, channels, c_dim=0):
    """An export folder of a tiny FastGAN-lite: what `generate` and `interpolate` take."""
    from projected_gan.export import export_generator

    torch.manual_seed(0)
    G = projected_gan.create(
        "generators", "fastgan_lite", img_resolution=size, img_channels=channels, c_dim=c_dim,
        ngf=8, z_dim=16,
    ).eval()  # fmt: skip
    export_generator(G, tmp_path / "G", num_samples=0)
    return G, tmp_path / "G"


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (4, "RGBA")])
def test_generate_writes_h_by_w_pngs_with_every_channel(tmp_path, capsys, channels, mode):
    import numpy as np
    from PIL import Image

    from projected_gan.commands.sampling import generate
    from projected_gan.images import to_uint8

    G, folder = exported(tmp_path, (32, 64), channels)
    written = generate(str(folder), "0-2", grid=str(tmp_path / "g.png"), outdir=str(tmp_path / "o"))
    assert [p.name for p in written] == ["g.png", "seed0000.png", "seed0001.png", "seed0002.png"]
    with torch.no_grad():
        expected = to_uint8(G(latents_from_seeds([1], G.z_dim)))[0].permute(1, 2, 0).numpy()
    with Image.open(tmp_path / "o" / "seed0001.png") as pil:
        assert pil.mode == mode and pil.size == (64, 32)  # W x H
        assert np.array_equal(np.asarray(pil).reshape(expected.shape), expected)
    with Image.open(tmp_path / "g.png") as grid:  # 3 images of 32 x 64: 3 rows of 1
        assert grid.mode == ("L" if channels == 1 else "RGB") and grid.size == (64, 3 * 32)


def test_generate_writes_five_channels_as_npy_and_an_rgb_grid(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from projected_gan.inference import generate_images, load_generator, write_images

    G, folder = exported(tmp_path, (64, 32), 5, c_dim=2)
    images = generate_images(load_generator(folder), [3, 4], class_idx=1)
    assert images.shape == (2, 5, 64, 32) and images.dtype == torch.uint8
    assert torch.equal(images, generate_images(G, [3, 4], class_idx=1))
    written = write_images(images, [3, 4], grid=tmp_path / "g.png", outdir=tmp_path / "o")
    assert [p.name for p in written] == ["g.png", "seed0003.npy", "seed0004.npy"]
    array = np.load(tmp_path / "o" / "seed0004.npy")
    assert array.dtype == np.uint8 and array.shape == (64, 32, 5)
    assert np.array_equal(array, images[1].permute(1, 2, 0).numpy())
    with Image.open(tmp_path / "g.png") as grid:
        assert grid.mode == "RGB" and grid.size == (2 * 32, 64)
        assert np.array_equal(np.asarray(grid)[:, 32:], array[..., :3])  # channels 0-2
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["seed0003.npy", "seed0004.npy"]


@pytest.mark.parametrize("channels", [1, 4])
def test_interpolate_writes_h_by_w_frames(tmp_path, capsys, channels):
    from PIL import Image

    from projected_gan.commands.sampling import interpolate

    _, folder = exported(tmp_path, (32, 64), channels)
    path = interpolate(str(folder), "1,2", str(tmp_path / "walk.gif"), frames=3)
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.size == (64, 32)
