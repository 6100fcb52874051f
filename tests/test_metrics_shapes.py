"""Metrics of non-square and multi-channel images: the RGB view every metric sees, the stretch to
the feature network's square input, real-statistics keys by size / channels / fit, and the
one error for a generator whose images differ from the data's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from projected_gan.metrics import (
    PooledFeatures,
    StatsCache,
    as_uint8_rgb,
    compare_images,
    dataset_image_shape,
    evaluate,
    metric_view,
    quantize_images,
    real_stats_key,
)
from tests.test_metrics import TinyFeatureNet

OPTS = dict(metrics=("fd", "kid"), batch_size=4, device="cpu", kid={"subset_size": 4})


def images(n: int, channels: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """uint8 (n, channels, H, W): a colour per image and channel plus texture."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(n, channels, 1, 1, generator=gen) * 200
    return (base + torch.rand(n, channels, *size, generator=gen) * 55).to(torch.uint8)


def dataset(pixels: torch.Tensor, fingerprint: str = "d", fit: str | None = None):
    """A dataset as the metrics read it: images (N, C, H, W) uint8, fingerprint, spec.fit."""
    spec = None if fit is None else SimpleNamespace(fit=fit)
    return SimpleNamespace(images=pixels, labels=None, fingerprint=fingerprint, spec=spec)


def replaying(fakes: torch.Tensor):
    """A generator_fn giving ``fakes`` (float in [-1, 1]) batch after batch."""
    done = [0]

    def generator_fn(n: int, labels) -> torch.Tensor:
        out = fakes[done[0] : done[0] + n]
        done[0] += n
        return out

    return generator_fn


def as_float(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1


# ------------------------------------------------------------------------------ RGB view
def test_as_uint8_rgb_is_the_rgb_view_of_any_channel_count():
    gray = images(2, 1, (8, 12), seed=0)
    assert torch.equal(as_uint8_rgb(gray), gray.expand(-1, 3, -1, -1))
    la = images(2, 2, (8, 12), seed=1)  # luma + alpha: the alpha is dropped
    assert torch.equal(as_uint8_rgb(la), la[:, :1].expand(-1, 3, -1, -1))
    many = images(2, 7, (8, 12), seed=2)
    assert torch.equal(as_uint8_rgb(many), many[:, :3])
    floats = torch.rand(2, 4, 8, 12) * 2 - 1
    assert torch.equal(as_uint8_rgb(floats), quantize_images(floats[:, :3]))
    for bad in (torch.zeros(2, 17, 8, 8), torch.zeros(2, 0, 8, 8), torch.zeros(3, 8, 8)):
        with pytest.raises(ValueError, match="1 to 16 channels"):
            as_uint8_rgb(bad)


def test_metric_view_names_what_the_metrics_see():
    assert [metric_view(c) for c in (1, 2, 3, 4, 16)] == [
        "rgb of 1 channel",
        "rgb of 2 channels",
        "rgb",
        "rgb of 4 channels",
        "rgb of 16 channels",
    ]
    for bad in (0, 17, 3.0, True):
        with pytest.raises(ValueError, match="channels"):
            metric_view(bad)


def test_one_channel_evaluates_as_its_replication_and_four_as_their_first_three():
    size = (16, 24)
    reals, fakes = images(12, 4, size, seed=0), as_float(images(8, 4, size, seed=1))

    def run(channels: slice | list[int]) -> dict[str, float]:
        return evaluate(replaying(fakes[:, channels]), dataset(reals[:, channels]),
                        num_images=8, use_cache=False, feature_network=TinyFeatureNet(),
                        **OPTS)  # fmt: skip

    rgb = run(slice(0, 3))
    assert rgb["fd"] > 0
    assert run(slice(0, 4)) == rgb  # RGBA: channels 0-2, exactly
    other = run([1, 2, 3])  # control: another choice of three channels gives other numbers
    assert abs(other["fd"] - rgb["fd"]) > 1e-3 * rgb["fd"]

    gray = run([0])
    assert gray == run([0, 0, 0])  # 1 channel: its replication, exactly
    assert run([0, 3]) == gray  # luma + alpha: the alpha is dropped
    assert abs(gray["fd"] - rgb["fd"]) > 1e-3 * rgb["fd"]


def test_compare_images_takes_any_channels_on_either_side():
    a, b = images(8, 1, (16, 16), seed=0), images(8, 4, (16, 24), seed=1)
    net = TinyFeatureNet()
    got = compare_images(a, b, feature_network=net, **OPTS)
    want = compare_images(a.expand(-1, 3, -1, -1), b[:, :3], feature_network=net, **OPTS)
    assert got == want and got["fd"] > 0


# ---------------------------------------------------------------------- non-square input
class Recorder(TinyFeatureNet):
    """The stand-in network, keeping what it was given."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.seen = x
        return super().forward(x)


def test_pooled_space_stretches_non_square_images_to_its_square_input():
    # 32 x 64: the left quarter black, the rest white. Stretched to 16 x 16 the black part is
    # the first 4 columns; a centre crop would be all white, a pad would add black rows.
    pixels = torch.full((2, 3, 32, 64), 255, dtype=torch.uint8)
    pixels[..., :16] = 0
    net = Recorder()
    PooledFeatures(net)(pixels)
    x = net.seen
    assert x.shape == (2, 3, 16, 16)  # the network's input_size, square
    assert torch.equal(x, x[:, :, :1].expand_as(x))  # every row alike: nothing padded
    columns = x[0, 0, 0]
    assert torch.all(columns[:3] < -0.99) and torch.all(columns[5:] > 0.99)
    assert -1 < columns[3] < 1 or -1 < columns[4] < 1  # the antialiased edge


# --------------------------------------------------------------------- real statistics key
def test_real_stats_keys_differ_by_size_channels_and_fit(tmp_path):
    cache = StatsCache(tmp_path)
    base = dict(dataset="f", size=(64, 96), channels=3, fit="crop", mirror=False, num_real=10)
    variants = [
        base,
        {**base, "size": (96, 64)},
        {**base, "size": (64, 64)},
        {**base, "channels": 1},
        {**base, "channels": 4},
        {**base, "fit": "pad"},
        {**base, "fit": "stretch"},
        {**base, "fit": None},
    ]
    keys = [real_stats_key(v.pop("dataset"), v.pop("size"), **v) for v in map(dict, variants)]
    assert len({cache.path_for(k) for k in keys}) == len(variants)
    assert keys[0]["size"] == [64, 96] and "64x96" in cache.path_for(keys[0]).name
    square = real_stats_key("f", 64, 3, "crop", mirror=False, num_real=10)
    assert square == keys[2]  # one side means a square


def test_a_crop_and_a_pad_of_one_folder_never_share_statistics(tmp_path):
    size = (16, 24)
    reals, fakes = images(8, 3, size, seed=0), as_float(images(4, 3, size, seed=1))
    net = TinyFeatureNet()
    kw = dict(num_images=4, cache_dir=tmp_path, feature_network=net, **OPTS)
    crop = evaluate(replaying(fakes), dataset(reals, fit="crop"), **kw)
    assert net.calls == 2 + 1
    # the same fingerprint (one folder) with other pixels (padded): computed, not served stale
    padded = reals.clone()
    padded[..., :4] = 0
    pad = evaluate(replaying(fakes), dataset(padded, fit="pad"), **kw)
    assert net.calls == 3 + 3 and pad["fd"] != crop["fd"]
    assert evaluate(replaying(fakes), dataset(padded, fit="pad"), **kw) == pad
    assert net.calls == 6 + 1  # now from the cache
    assert len(list(tmp_path.glob("*.npz"))) == 2


# ----------------------------------------------------------------------------- shapes
class Streamed:
    """A dataset decoded on the fly: no ``images``, but ``read_images``, ``size``, ``channels``."""

    def __init__(self, pixels: torch.Tensor) -> None:
        self.pixels, self.labels, self.fingerprint = pixels, None, "s"
        self.channels, self.size = pixels.shape[1], tuple(pixels.shape[2:])

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def read_images(self, index: torch.Tensor) -> torch.Tensor:
        return self.pixels[index]


def test_non_square_streamed_dataset_reads_its_size():
    pixels = images(6, 2, (16, 24), seed=0)
    assert dataset_image_shape(Streamed(pixels)) == (2, 16, 24)
    fakes = as_float(images(4, 2, (16, 24), seed=1))
    kw = dict(num_images=4, use_cache=False, feature_network=TinyFeatureNet(), **OPTS)
    got = evaluate(replaying(fakes), Streamed(pixels), **kw)
    assert got == evaluate(replaying(fakes), dataset(pixels), **kw) and got["fd"] > 0


@pytest.mark.parametrize(
    ("fake_shape", "message"),
    [
        ((1, 16, 24), "1-channel 16x24 images, the dataset holds 3-channel 16x24"),
        ((3, 24, 16), "3-channel 24x16 images, the dataset holds 3-channel 16x24"),
        ((3, 16, 16), "3-channel 16x16 images, the dataset holds 3-channel 16x24"),
    ],
)
def test_a_generator_of_other_size_or_channels_is_one_clear_error(fake_shape, message):
    def generator_fn(n: int, labels) -> torch.Tensor:
        return torch.zeros(n, *fake_shape)

    with pytest.raises(ValueError, match=message):
        evaluate(generator_fn, dataset(images(4, 3, (16, 24), seed=0)), num_images=4,
                 use_cache=False, feature_network=TinyFeatureNet(), **OPTS)  # fmt: skip


# ---------------------------------------------------------------------- the eval command
def test_eval_of_a_generator_records_its_size_channels_and_view(tmp_path, monkeypatch, capsys):
    import json

    import projected_gan as pg
    from projected_gan.commands import evaluate_checkpoint
    from projected_gan.export import export_generator
    from tests.test_eval_folders import write_images

    monkeypatch.setenv("PROJECTED_GAN_CACHE", str(tmp_path / "cache"))
    G = pg.create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    export_generator(G, tmp_path / "G", num_samples=0)
    write_images(tmp_path / "reals", [(40, 32)] * 16, seed=0)
    out = tmp_path / "m.json"
    results = evaluate_checkpoint(str(tmp_path / "G"), data=str(tmp_path / "reals"),
                                  metrics="fd", num=4, batch=4, json_out=str(out),
                                  feature_network="tf_efficientnet_lite0")  # fmt: skip
    record = json.loads(out.read_text())
    assert record["fd"] == results["fd"] > 0
    assert (record["size"], record["channels"], record["view"]) == ([32, 32], 3, "rgb")
    assert "images: 32x32, 3 channel(s); the metrics see: rgb" in capsys.readouterr().out
