"""Images as users have them: any H x W (crop, pad, stretch), 1-4 channels from image files,
any count from ``.npy`` arrays; through decoding, the cache, streaming and the data command."""

from __future__ import annotations

import io
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from projected_gan.data import (
    DataError,
    DataSpec,
    DataWarning,
    load_dataset,
    load_image_dataset,
    prepare_image,
)
from projected_gan.data.decode import decode_member, prepare_array
from projected_gan.data.files import open_source
from projected_gan.data.load import _cache_key, dataset_cache_files
from tests.conftest import save_image_file

pytestmark = pytest.mark.usefixtures("cache_in_tmp")

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def save_npy(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path


def bands() -> Image.Image:
    """100 wide, 50 high: vertical quarters green | red | blue | green."""
    image = Image.new("RGB", (100, 50), GREEN)
    image.paste(RED, (25, 0, 50, 50))
    image.paste(BLUE, (50, 0, 75, 50))
    return image


def near(region: np.ndarray, colour: tuple[int, ...], tol: int = 2) -> bool:
    """Every pixel of ``region`` (C, h, w) is ``colour`` up to LANCZOS's ringing of +-tol."""
    return bool((np.abs(region.astype(int) - np.array(colour)[:, None, None]) <= tol).all())


def quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_image_dataset(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Fits


def test_crop_keeps_the_centre_box_of_the_target_aspect():
    x = prepare_image(bands(), 32).astype(int)  # the centred 50 x 50: red | blue, no green
    assert x.shape == (3, 32, 32)
    assert x[1, :, 2:30].max() <= 2  # the green outer quarters are gone (LANCZOS reaches
    # a few pixels beyond the box: the edge columns see a trace of them)
    assert near(x[:, :, 1:12], RED)
    assert near(x[:, :, 20:31], BLUE)
    # A wider target (16 x 64, aspect 4) keeps the whole width: all four quarters.
    wide = prepare_image(bands(), (16, 64)).astype(int)
    assert wide.shape == (3, 16, 64)
    for cols, colour in (((0, 12), GREEN), ((20, 28), RED), ((36, 44), BLUE), ((52, 64), GREEN)):
        assert near(wide[:, :, slice(*cols)], colour), cols


def test_pad_keeps_everything_between_black_bars_at_exact_rows_and_columns():
    x = prepare_image(bands(), 32, fit="pad").astype(int)  # 100x50 -> 32x16 at rows 8..23
    assert (x[:, :8] == 0).all() and (x[:, 24:] == 0).all()
    assert (x[:, 8:24].sum(0) > 0).all()
    assert near(x[:, 8:24, :6], GREEN)  # both outer quarters kept
    assert near(x[:, 8:24, 27:], GREEN)
    tall = prepare_image(bands(), (64, 32), fit="pad").astype(int)  # 32x16 at rows 24..39
    assert (tall[:, :24] == 0).all() and (tall[:, 40:] == 0).all()
    assert (tall[:, 24:40].sum(0) > 0).all()
    # A tall image in a wide target: bars left and right (50 wide, 100 high -> 16 x 32).
    side = prepare_image(bands().rotate(90, expand=True), (32, 64), fit="pad").astype(int)
    assert (side[:, :, :24] == 0).all() and (side[:, :, 40:] == 0).all()
    assert (side[:, :, 24:40].sum(0) > 0).all()


def test_stretch_keeps_everything_in_proportion():
    x = prepare_image(bands(), (16, 64), fit="stretch").astype(int)
    for cols, colour in (((0, 12), GREEN), ((20, 28), RED), ((36, 44), BLUE), ((52, 64), GREEN)):
        assert near(x[:, :, slice(*cols)], colour), cols
    square = prepare_image(bands(), 32, fit="stretch").astype(int)  # squeezed, nothing lost
    assert near(square[:, :, :5], GREEN)
    assert near(square[:, :, 27:], GREEN)
    assert square.sum(0).min() > 0


def test_pad_is_transparent_where_there_is_alpha():
    image = bands().convert("RGBA")
    x = prepare_image(image, 32, channels=4, fit="pad")
    assert (x[:, :8] == 0).all() and (x[3, 8:24] == 255).all()
    la = prepare_image(image, 32, channels=2, fit="pad")
    assert (la[:, :8] == 0).all() and (la[1, 8:24] == 255).all()


def _old_square(image: Image.Image, r: int, channels: int) -> np.ndarray:
    """What decoding did before sizes and fits (RGB and L images): pinned here, because square
    caches built then are still mapped now, under the same key."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    box = (left, top, left + side, top + side)
    image = image.resize((r, r), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    if channels == 1:
        return np.asarray(image.convert("L"))[None]
    return np.asarray(image).transpose(2, 0, 1)


def test_square_crop_is_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(100, 50), (37, 91), (300, 200), (64, 64), (20, 20)]):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for mode in ("RGB", "L"):
            image = Image.fromarray(pixels).convert(mode)
            save_image_file(tmp_path / "d" / f"{mode}{i}.png", image)
            for r, c in ((16, 3), (32, 1), (48, 3)):
                assert np.array_equal(prepare_image(image, r, c), _old_square(image, r, c))
        save_image_file(tmp_path / "d" / f"jpeg{i}.jpg", Image.fromarray(pixels), quality=90)
    got = quiet(tmp_path / "d", 16, cache=False)
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    for name, image in zip(names, got.images):
        with Image.open(tmp_path / "d" / name) as f:
            if f.format == "JPEG":  # the same draft (decoding at a reduced scale) as before
                f.draft(None, (32, 32))
            f.load()
            assert np.array_equal(image.numpy(), _old_square(f, 16, 3)), name


def test_npy_channels_are_resized_like_the_image_channels():
    pixels = np.random.default_rng(1).integers(0, 256, (50, 100, 3), dtype=np.uint8)
    for fit in ("crop", "pad", "stretch"):
        for size in ((32, 32), (16, 48), (48, 16)):
            from_image = prepare_image(Image.fromarray(pixels), size, 3, fit)
            assert np.array_equal(prepare_array(pixels, size, fit), from_image), (fit, size)


# ---------------------------------------------------------------------------------------------
# Channels


def _luma(r: int, g: int, b: int) -> int:  # ITU-R 601, as PIL rounds it
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


def test_channels_from_l_la_rgb_rgba(tmp_path):
    colour, hidden = (200, 100, 50), (10, 20, 30)  # left half opaque, right half transparent
    rgba = Image.new("RGBA", (32, 32), (*hidden, 0))
    rgba.paste((*colour, 255), (0, 0, 16, 32))
    la = Image.new("LA", (32, 32), (77, 0))
    la.paste((77, 255), (0, 0, 16, 32))
    files = {
        "l.png": Image.new("L", (32, 32), 77),
        "la.png": la,
        "rgb.png": Image.new("RGB", (32, 32), colour),
        "rgba.png": rgba,
    }
    for name, image in files.items():
        save_image_file(tmp_path / "d" / name, image)
    y = _luma(*colour)
    left = {  # channels -> file -> the left half's pixel
        1: {"l.png": [77], "la.png": [77], "rgb.png": [y], "rgba.png": [y]},
        2: {"l.png": [77, 255], "la.png": [77, 255], "rgb.png": [y, 255], "rgba.png": [y, 255]},
        3: {
            "l.png": [77] * 3,
            "la.png": [77] * 3,
            "rgb.png": list(colour),
            "rgba.png": list(colour),
        },
        4: {
            "l.png": [77, 77, 77, 255],
            "la.png": [77, 77, 77, 255],
            "rgb.png": [*colour, 255],
            "rgba.png": [*colour, 255],
        },
    }
    right = {  # transparent: composited on black (1, 3 channels) or alpha 0 kept (2, 4)
        1: {"la.png": [0], "rgba.png": [0]},
        2: {"la.png": [77, 0], "rgba.png": [_luma(*hidden), 0]},
        3: {"la.png": [0, 0, 0], "rgba.png": [0, 0, 0]},
        4: {"la.png": [77, 77, 77, 0], "rgba.png": [*hidden, 0]},
    }
    for channels in (1, 2, 3, 4):
        ds = load_image_dataset(tmp_path / "d", 32, channels=channels, cache=False)
        assert ds.images.shape == (4, channels, 32, 32) and ds.channels == channels
        for name, image in zip(sorted(files), ds.images):
            expected = torch.tensor(left[channels][name], dtype=torch.uint8)[:, None, None]
            assert torch.equal(image[:, :, :14], expected.expand(-1, 32, 14)), (channels, name)
            want = right[channels].get(name, left[channels][name])
            expected = torch.tensor(want, dtype=torch.uint8)[:, None, None]
            assert torch.equal(image[:, :, 18:], expected.expand(-1, 32, 14)), (channels, name)


def test_sixteen_bit_tiff_is_rescaled_to_eight_bits(tmp_path):
    image = Image.fromarray(np.full((20, 20), 60000, np.uint16))  # mode I;16
    save_image_file(tmp_path / "d" / "deep.tif", image)
    ds = load_image_dataset(tmp_path / "d", 16, channels=1, cache=False)
    assert ds.images.unique().tolist() == [233]  # round(60000 / 257), not clipped to 255


def test_a_picture_cannot_give_five_channels(tmp_path):
    save_image_file(tmp_path / "d" / "a.png", Image.new("RGB", (20, 20)))
    why = decode_member(open_source(tmp_path / "d"), "a.png", 16, 5)
    assert isinstance(why, str) and ".npy" in why and "at most 4" in why
    with pytest.raises(DataError, match=r"a\.png.*\.npy"):
        load_image_dataset(tmp_path / "d", 16, channels=5, strict=True)


# ---------------------------------------------------------------------------------------------
# .npy arrays


def _arrays(folder: Path, n: int, channels: int, shape=(24, 40)) -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    arrays = [rng.integers(0, 256, (*shape, channels), dtype=np.uint8) for _ in range(n)]
    for i, a in enumerate(arrays):
        save_npy(folder / f"c{i % 2}" / f"{i:03d}.npy", a)
    return arrays


def test_five_channel_arrays_through_cache_and_stream(tmp_path):
    _arrays(tmp_path / "d", 6, 5)
    flat = np.stack([np.full((24, 40), 40 * c + 10, np.uint8) for c in range(5)], axis=-1)
    save_npy(tmp_path / "d" / "c0" / "flat.npy", flat)
    cached = load_image_dataset(tmp_path / "d", (16, 32), channels=5, conditional=True)
    again = load_image_dataset(tmp_path / "d", (16, 32), channels=5, conditional=True)
    streamed = load_image_dataset(
        tmp_path / "d", (16, 32), channels=5, conditional=True, storage="stream", workers=2
    )
    assert cached.cache_built and not again.cache_built and again.mapped
    assert cached.images.shape == (7, 5, 16, 32) and streamed.size == (16, 32) == cached.size
    assert streamed.channels == 5 and "5x16x32" in repr(streamed) and "5x16x32" in repr(cached)
    everything = streamed.read_images(torch.arange(7))
    assert torch.equal(everything, cached.images) and torch.equal(again.images, cached.images)
    assert torch.equal(streamed.labels, cached.labels)
    flat_out = cached.images[streamed.reader.names.index("c0/flat.npy")]  # crop: exact values
    for c in range(5):
        assert flat_out[c].unique().tolist() == [40 * c + 10]


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.zeros((20, 20, 5), np.uint16), "16-bit data would lose precision in the 8-bit cache"),
        (np.zeros((20, 20, 5), np.float32), "32-bit data would lose precision"),
        (np.zeros((20, 20, 3), np.uint8), "3 channel"),
        (np.zeros((20, 20, 5, 1), np.uint8), "(H, W) or (H, W, C)"),
        (np.array([{"a": 1}], dtype=object), "pickles are never loaded"),
    ],
)
def test_unusable_arrays_are_refused_with_the_reason(tmp_path, array, reason):
    path = tmp_path / "d" / "x.npy"
    path.parent.mkdir(parents=True)
    np.save(path, array, allow_pickle=True)
    why = decode_member(open_source(tmp_path / "d"), "x.npy", 16, 5)
    assert isinstance(why, str) and reason in why
    with pytest.raises(DataError, match=r"x\.npy"):
        load_image_dataset(tmp_path / "d", 16, channels=5, strict=True)


def test_a_lying_header_is_refused_without_allocating(tmp_path):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": "|u1", "fortran_order": False, "shape": (100_000, 100_000, 5)}
    )
    path = tmp_path / "d" / "huge.npy"
    path.parent.mkdir(parents=True)
    path.write_bytes(out.getvalue() + bytes(1000))  # promises 50 GB, holds 1 kB
    source = open_source(tmp_path / "d")
    tracemalloc.start()
    try:
        why = decode_member(source, "huge.npy", 16, 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(why, str) and "promises 50000000000 bytes" in why
    assert peak < 1 << 20
    cut = tmp_path / "d" / "cut.npy"
    np.save(cut, np.zeros((20, 20, 5), np.uint8))
    cut.write_bytes(cut.read_bytes()[:-1])
    assert "promises 2000 bytes" in decode_member(open_source(tmp_path / "d"), "cut.npy", 16, 5)


# ---------------------------------------------------------------------------------------------
# Non-square sizes through the cache, streaming and the key


@pytest.mark.parametrize("size", [(32, 64), (64, 32)])
def test_non_square_cache_build_reload_and_stream_agree(tmp_path, size):
    rng = np.random.default_rng(3)
    for i, (w, h) in enumerate([(80, 40), (40, 80), (50, 50), (120, 70), (33, 65)]):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        save_image_file(tmp_path / "d" / f"{i}.png", Image.fromarray(pixels))
    built = quiet(tmp_path / "d", size, fit="pad")
    again = quiet(tmp_path / "d", size, fit="pad")
    streamed = quiet(tmp_path / "d", size, fit="pad", storage="stream", workers=2)
    assert built.cache_built and not again.cache_built
    assert built.images.shape == (5, 3, *size) and built.size == size == streamed.size
    assert f"{size[0]}x{size[1]}px" in built.cache_file.name
    assert torch.equal(again.images, built.images)
    assert torch.equal(streamed.read_images(torch.arange(5)), built.images)
    assert built.spec.resolution == size and built.spec.fit == "pad"


def test_cache_key_differs_by_fit_size_and_channels_and_squares_keep_theirs(tmp_path):
    save_image_file(tmp_path / "d" / "a.png", Image.new("RGB", (20, 20)))
    source = open_source(tmp_path / "d")
    paths = {
        dataset_cache_files(source, tmp_path / "d", r, c, fit=f).raw
        for r in (32, (32, 64), (64, 32))
        for c in (1, 3, 5)
        for f in ("crop", "pad", "stretch")
    }
    assert len(paths) == 27
    # A square crop has the key it had before sizes and fits: caches built then still map.
    key = _cache_key(source, (32, 32), 3, "crop", None)
    assert set(key) == {"fingerprint", "resolution", "channels", "max_images"}
    assert key["resolution"] == 32


def test_the_upscaled_count_follows_the_fit(tmp_path):
    save_image_file(tmp_path / "d" / "a.png", Image.new("RGB", (40, 20), RED))  # 40 wide, 20 high
    count = {
        ((16, 64), "pad"): 0,  # fitted: 0.8x
        ((32, 64), "pad"): 1,  # 1.6x
        ((16, 32), "crop"): 0,
        ((16, 64), "crop"): 1,  # a 40 x 10 box to 64 x 16
        ((16, 64), "stretch"): 1,
    }
    for (size, fit), n in count.items():
        assert quiet(tmp_path / "d", size, fit=fit, cache=False).upscaled == n, (size, fit)


def test_load_dataset_passes_the_fit_and_records_the_size(tmp_path):
    save_image_file(tmp_path / "d" / "a.png", bands())
    spec = DataSpec(path=str(tmp_path / "d"), resolution=[16, 48], fit="stretch", min_images=1)
    ds = load_dataset(spec)
    assert ds.spec.fit == "stretch" and ds.spec.resolution == (16, 48) and ds.size == (16, 48)
    assert torch.equal(
        ds.images[0], torch.from_numpy(prepare_image(bands(), (16, 48), 3, "stretch"))
    )
    square = load_dataset(DataSpec(path=str(tmp_path / "d"), resolution=16, min_images=1))
    assert square.spec.resolution == 16 and square.spec.fit == "crop" and square.size == (16, 16)


# ---------------------------------------------------------------------------------------------
# projected-gan data


def test_data_command_sizes_fits_and_channels(tmp_path, capsys):
    from projected_gan.cli import main

    for i in range(3):
        save_image_file(tmp_path / "d" / f"{i}.png", bands())
    assert main(["data", str(tmp_path / "d"), "--resolution", "16x32", "--fit", "pad",
                 "--channels", "4"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "images    3 at 16x32 (pad), 4 channel(s)" in out and "-16x32px-" in out
    assert main(["data", str(tmp_path / "d"), "--resolution", "16,32", "--fit", "pad",
                 "--channels", "4"]) == 0  # fmt: skip
    assert "already built" in capsys.readouterr().out
    for flags, word in (
        (["--resolution", "16y32"], "--resolution"),
        (["--resolution", "0"], "--resolution"),
        (["--resolution", "16", "--fit", "zoom"], "--fit"),
        (["--resolution", "16", "--channels", "17"], "--channels"),
        (["--resolution", "16", "--channels", "rgb"], "--channels"),
    ):
        assert main(["data", str(tmp_path / "d"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and word in err, flags


def _png16(path: Path, colour_type: int, values: np.ndarray) -> Path:
    """A 16-bit PNG written by hand (Pillow writes none with alpha): ``values`` uint16
    ``(H, W, C)``, colour type 4 (LA) or 6 (RGBA)."""
    import struct
    import zlib

    h, w, _ = values.shape
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png + chunk(b"IEND", b""))
    return path


def test_sixteen_bit_png_with_alpha_is_refused_where_alpha_is_kept(tmp_path):
    depth = np.arange(8 * 8 * 4, dtype=np.uint16).reshape(8, 8, 4) * 97
    _png16(tmp_path / "d" / "rgbd.png", 6, depth)
    source = open_source(tmp_path / "d")
    why = decode_member(source, "rgbd.png", 8, 4)
    assert isinstance(why, str) and "16-bit RGBA PNG" in why and "precision" in why
    # RGB alone keeps the 8-bit reading of colour, as for every 16-bit image
    image, _ = decode_member(source, "rgbd.png", 8, 3)
    assert image.shape == (3, 8, 8) and image.dtype == np.uint8
