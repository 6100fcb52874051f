"""Dataset loading (folders, zips, bad files, conversions, cache), batches, the shipped flowers."""

from __future__ import annotations

import io
import os
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from projected_gan.data import (
    DataError,
    DataWarning,
    ImageDataset,
    InfiniteBatches,
    default_dataset_path,
    load_image_dataset,
    to_float,
)
from projected_gan.data import load as load_module
from projected_gan.data import store as store_module
from tests.conftest import save_image_file

pytestmark = pytest.mark.usefixtures("cache_in_tmp")


def solid(color, size=(32, 32), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def noise(seed: int, size=(48, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def load_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_image_dataset(*args, **kwargs)


def data_warnings(record, word: str) -> list[str]:
    return [str(w.message) for w in record if w.category is DataWarning and word in str(w.message)]


# ---------------------------------------------------------------------------------------------
# Bad paths


def test_missing_path_names_it(tmp_path):
    with pytest.raises(DataError, match=r"nope.*does not exist"):
        load_image_dataset(tmp_path / "nope", 32)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty.*is empty"):
        load_image_dataset(tmp_path / "empty", 32)


def test_folder_without_images(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "notes.txt").write_text("hello")
    (tmp_path / "d" / "sub" / "data.csv").write_text("1,2")
    with pytest.raises(DataError, match=r"contains no image files.*\.jpg"):
        load_image_dataset(tmp_path / "d", 32)


def test_plain_file_is_not_a_source(tmp_path):
    f = tmp_path / "images.tar"
    f.write_bytes(b"not an archive")
    with pytest.raises(DataError, match=r"images\.tar.*not a zip"):
        load_image_dataset(f, 32)


def test_bad_arguments_are_named(tmp_path):
    save_image_file(tmp_path / "d" / "a.png", solid("red"))
    with pytest.raises(DataError, match="resolution"):
        load_image_dataset(tmp_path / "d", 0)
    with pytest.raises(DataError, match="channels"):
        load_image_dataset(tmp_path / "d", 32, channels=17)
    with pytest.raises(DataError, match="fit"):
        load_image_dataset(tmp_path / "d", 32, fit="zoom")
    with pytest.raises(DataError, match="resolution"):
        load_image_dataset(tmp_path / "d", [32, 0])
    with pytest.raises(DataError, match="min_images"):
        load_image_dataset(tmp_path / "d", 32, min_images=0)


# ---------------------------------------------------------------------------------------------
# Broken files


@pytest.fixture
def messy(tmp_path) -> Path:
    """4 good images and 3 broken ones (zero bytes, garbage, truncated JPEG) + hidden junk."""
    root = tmp_path / "messy"
    for i in range(4):
        save_image_file(root / f"good{i}.png", noise(i))
    (root / "a_zero.jpg").write_bytes(b"")
    (root / "b_garbage.png").write_bytes(os.urandom(500))
    whole = io.BytesIO()
    noise(9, (128, 128)).save(whole, "JPEG", quality=95)
    (root / "c_truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (root / "._good0.png").write_bytes(b"macOS resource fork")  # hidden: ignored, not skipped
    return root


def test_broken_files_skipped_with_one_warning(messy):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = load_image_dataset(messy, 32)
    assert len(ds) == 4
    assert sorted(ds.skipped) == ["a_zero.jpg", "b_garbage.png", "c_truncated.jpg"]
    found = data_warnings(record, "unreadable")
    assert len(found) == 1
    assert "3 unreadable" in found[0] and "c_truncated.jpg" in found[0]


def test_strict_fails_on_first_bad_file(messy):
    with pytest.raises(DataError, match=r"a_zero\.jpg"):
        load_image_dataset(messy, 32, strict=True)


def test_too_few_readable_images(messy):
    with pytest.raises(DataError, match=r"only 4 readable.*min_images=5"):
        load_quiet(messy, 32, min_images=5)


def test_max_images_fills_up_past_broken_files(messy):
    ds = load_quiet(messy, 32, max_images=3, cache=False)
    assert len(ds) == 3
    reference = load_quiet(messy, 32, cache=False)
    assert torch.equal(ds.images, reference.images[:3])


# ---------------------------------------------------------------------------------------------
# Conversions, crops, resizing


def test_modes_are_converted_to_rgb(tmp_path):
    root = tmp_path / "modes"
    save_image_file(root / "gray.png", solid(100, mode="L"))
    rgba = Image.new("RGBA", (32, 32), (200, 0, 0, 255))
    rgba.paste((200, 0, 0, 0), (0, 0, 16, 32))  # left half fully transparent
    save_image_file(root / "rgba.png", rgba)
    save_image_file(root / "gray16.png", Image.fromarray(np.full((32, 32), 32896, dtype=np.uint16)))
    save_image_file(root / "palette.png", solid((0, 0, 255)).convert("P"))
    save_image_file(root / "cmyk.jpg", solid((0, 255, 255, 0), mode="CMYK"), quality=100)
    ds = load_image_dataset(root, 32, cache=False)
    by_name = dict(zip(sorted(p.name for p in root.iterdir()), ds.images.int()))
    assert ds.images.shape == (5, 3, 32, 32)

    assert (by_name["gray.png"] - 100).abs().max() <= 1
    assert (by_name["gray16.png"] - 128).abs().max() <= 1  # 32896 / 257, not clipped to 255
    assert by_name["palette.png"][:, 4, 4].tolist() == [0, 0, 255]
    red = by_name["cmyk.jpg"][:, 16, 16]
    assert red[0] > 240 and red[1:].max() < 15
    # Composited on black: transparent -> black, opaque -> its colour.
    assert by_name["rgba.png"][:, :, 2:12].max() == 0
    assert by_name["rgba.png"][:, 16, 22].tolist() == [200, 0, 0]


def test_one_channel_output(tmp_path):
    save_image_file(tmp_path / "d" / "a.png", solid((255, 255, 255)))
    ds = load_image_dataset(tmp_path / "d", 16, channels=1, cache=False)
    assert ds.images.shape == (1, 1, 16, 16) and int(ds.images.min()) == 255


def test_tiny_images_upscaled_with_one_warning(tmp_path):
    for i in range(3):
        save_image_file(tmp_path / "d" / f"t{i}.png", noise(i, (8, 8)))
    save_image_file(tmp_path / "d" / "big.png", noise(5, (64, 64)))
    with pytest.warns(DataWarning) as record:
        ds = load_image_dataset(tmp_path / "d", 32, cache=False)
    assert ds.images.shape == (4, 3, 32, 32)
    found = data_warnings(record, "upscaled")
    assert len(found) == 1 and found[0].startswith("3 image(s)")


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (32, 32), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 16, 32))  # stored: left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the left edge becomes the top
    save_image_file(tmp_path / "d" / "phone.jpg", image, exif=exif.tobytes(), quality=95)
    x = load_image_dataset(tmp_path / "d", 32, cache=False).images[0].int()
    assert x[0, :12].min() > 200 and x[2, :12].max() < 60  # top: red
    assert x[2, 20:].min() > 200 and x[0, 20:].max() < 60  # bottom: blue


@pytest.mark.parametrize("size", [(96, 32), (32, 96)])
def test_non_square_is_centre_cropped(tmp_path, size):
    # Three bands along the long side: red | green | blue; only green survives the crop.
    image = Image.new("RGB", size, (0, 255, 0))
    w, h = size
    third = (w // 3, h) if w > h else (w, h // 3)
    image.paste((255, 0, 0), (0, 0, *third))
    image.paste((0, 0, 255), (w - third[0], h - third[1], w, h))
    save_image_file(tmp_path / "d" / "wide.png", image)
    ds = load_image_dataset(tmp_path / "d", 16, cache=False)
    x = ds.images[0].int()
    assert x[1].min() > 230
    assert x[0].max() < 25 and x[2].max() < 25


def test_resize_is_antialiased(tmp_path):
    # A 1-pixel checkerboard must average to grey when shrunk 4x, not alias to black/white.
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    save_image_file(tmp_path / "d" / "board.png", Image.fromarray(board))
    x = load_image_dataset(tmp_path / "d", 16, cache=False).images.float()
    assert (x[:, :, 2:-2, 2:-2] - 127.5).abs().max() < 8


def test_symlink_loop_terminates(tmp_path):
    root = tmp_path / "loopy"
    save_image_file(root / "a" / "img.png", noise(0))
    os.symlink(root, root / "a" / "back_to_root")
    os.symlink(root / "a", root / "a" / "self")
    os.symlink(tmp_path / "nowhere.jpg", root / "dangling.jpg")
    result = []
    walker = threading.Thread(target=lambda: result.append(load_quiet(root, 32, cache=False)))
    walker.daemon = True  # a looping walk must fail this test, not hang the suite
    walker.start()
    walker.join(timeout=30)
    assert result, "loading a folder with symlink loops did not finish in 30 s"
    assert len(result[0]) == 1
    assert result[0].skipped == ["dangling.jpg"]


# ---------------------------------------------------------------------------------------------
# Zip input and labels

COLOURS = {"cats": (255, 0, 0), "dogs": (0, 255, 0), "eels": (0, 0, 255)}


def make_classes(root: Path, per_class: int = 2) -> Path:
    for name, colour in COLOURS.items():
        for i in range(per_class):
            save_image_file(root / name / f"{i}.png", solid(colour))
    return root


def make_zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, p.relative_to(folder).as_posix())
        zf.writestr("__MACOSX/cats/._0.png", b"junk")
    return out


def check_labels(ds: ImageDataset) -> None:
    assert ds.class_names == ["cats", "dogs", "eels"] and ds.num_classes == 3
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    for image, label in zip(ds.images, ds.labels):
        assert image.argmax(0).eq(int(label)).all()  # the class's colour channel dominates


def test_labels_from_class_folders(tmp_path):
    ds = load_image_dataset(make_classes(tmp_path / "d"), 32, conditional=True)
    check_labels(ds)
    assert torch.allclose(ds.label_distribution(), torch.full((3,), 1 / 3))


def test_zip_matches_folder(tmp_path):
    folder = make_classes(tmp_path / "d")
    archive = make_zip(folder, tmp_path / "d.zip")
    from_zip = load_image_dataset(archive, 32, conditional=True, workers=2)
    check_labels(from_zip)
    from_folder = load_image_dataset(folder, 32, conditional=True)
    assert torch.equal(from_zip.images, from_folder.images)
    unlabelled = load_image_dataset(archive, 32)
    assert unlabelled.labels is None and unlabelled.num_classes == 0


def test_labels_need_class_folders(tmp_path):
    save_image_file(tmp_path / "flat" / "a.png", solid("red"))
    with pytest.raises(DataError, match=r"data.conditional.*sit directly"):
        load_image_dataset(tmp_path / "flat", 32, conditional=True)
    save_image_file(tmp_path / "one" / "only" / "a.png", solid("red"))
    with pytest.raises(DataError, match=r"at least two class sub-folders.*\['only'\]"):
        load_image_dataset(tmp_path / "one", 32, conditional=True)


# ---------------------------------------------------------------------------------------------
# The cache


def cache_files(tmp_path) -> list[Path]:
    return sorted((tmp_path / "cache").rglob("*.raw"))


def test_cache_reused_without_decoding(tmp_path, monkeypatch):
    folder = make_classes(tmp_path / "d")
    before = sorted(p.name for p in folder.rglob("*"))
    first = load_image_dataset(folder, 32, conditional=True)
    [file] = cache_files(tmp_path)
    stamp = file.stat().st_mtime_ns

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although a valid cache exists")

    monkeypatch.setattr(load_module, "decode_all", no_decoding)
    monkeypatch.setattr(store_module, "decode_into", no_decoding)
    second = load_image_dataset(folder, 32, conditional=True)
    assert first.mapped and second.mapped  # both map the one cache file
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.fingerprint == first.fingerprint
    assert file.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in folder.rglob("*")) == before  # nothing written into the data


def test_cache_invalidated_when_a_file_changes(tmp_path):
    folder = make_classes(tmp_path / "d")
    first = load_image_dataset(folder, 32)
    save_image_file(folder / "dogs" / "0.png", solid((255, 255, 255)))
    second = load_image_dataset(folder, 32)
    assert second.fingerprint != first.fingerprint
    assert int(second.images[2].min()) == 255 and int(first.images[2].min()) == 0
    assert len(cache_files(tmp_path)) == 2
    # Other settings get their own entries; labels are not decoded, so they share one.
    load_image_dataset(folder, 16)
    load_image_dataset(folder, 32, conditional=True)
    assert len(cache_files(tmp_path)) == 3


def test_corrupt_cache_is_rebuilt(tmp_path):
    folder = make_classes(tmp_path / "d")
    expected = load_image_dataset(folder, 32).images.clone()  # in memory: the file is cut next
    [file] = cache_files(tmp_path)
    file.write_bytes(file.read_bytes()[:300])  # cut off (in place: never read the old map now)
    with pytest.warns(DataWarning, match="ignoring the dataset cache.*cut off"):
        second = load_image_dataset(folder, 32)
    assert torch.equal(expected, second.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = load_image_dataset(folder, 32)  # the rebuilt file is valid again
    assert torch.equal(expected, third.images)


def test_cached_skips_still_warn_and_still_fail_strict(messy):
    load_quiet(messy, 32)
    with pytest.warns(DataWarning, match="3 unreadable"):
        ds = load_image_dataset(messy, 32)
    assert len(ds) == 4
    with pytest.raises(DataError, match=r"a_zero\.jpg"):
        load_image_dataset(messy, 32, strict=True)


# ---------------------------------------------------------------------------------------------
# Batches


def indexed(n: int, res: int = 4, labels: bool = True) -> ImageDataset:
    """Image i holds i at its left edge and a 255 marker at its right edge (flips show)."""
    images = torch.zeros(n, 3, res, res, dtype=torch.uint8)
    images[:, :, :, 0] = torch.arange(n, dtype=torch.uint8).view(n, 1, 1)
    images[:, :, :, -1] = 255
    return ImageDataset(images, torch.arange(n) % 3 if labels else None)


def ids(images: torch.Tensor) -> list[tuple[int, bool]]:
    """(image index, flipped?) of each sample in a batch."""
    left, right = images[:, 0, 0, 0], images[:, 0, 0, -1]
    flipped = left == 255
    return list(zip(torch.where(flipped, right, left).tolist(), flipped.tolist()))


def take(it, k: int) -> list[list[tuple[int, bool]]]:
    return [ids(next(it)[0]) for _ in range(k)]


def test_batches_are_deterministic_permutations():
    ds = indexed(10)
    a = take(InfiniteBatches(ds, 5, seed=3), 6)
    assert a == take(InfiniteBatches(ds, 5, seed=3), 6)
    assert a != take(InfiniteBatches(ds, 5, seed=4), 6)
    for epoch in range(3):  # each epoch (two batches) is a permutation of all 10 images
        seen = sorted(i for i, _ in a[2 * epoch] + a[2 * epoch + 1])
        assert seen == list(range(10))
    assert a[0:2] != a[2:4]  # and a different one each epoch


def test_batch_labels_and_types():
    ds = indexed(12)
    images, labels = next(InfiniteBatches(ds, 4))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 4, 4)
    assert images.is_contiguous() and labels.dtype == torch.int64
    assert labels.tolist() == [i % 3 for i, _ in ids(images)]
    assert next(InfiniteBatches(indexed(12, labels=False), 4))[1] is None


@pytest.mark.parametrize("mirror,drop_last", [(False, True), (True, False)])
def test_resume_continues_with_the_next_batch(mirror, drop_last):
    ds = indexed(11)
    it = InfiniteBatches(ds, 4, seed=1, mirror=mirror, drop_last=drop_last)
    take(it, 7)  # crosses epoch boundaries
    state = it.state_dict()
    assert set(state) == {"epoch", "position"}
    expected = take(it, 9)
    resumed = InfiniteBatches(ds, 4, seed=1, mirror=mirror, drop_last=drop_last)
    resumed.load_state_dict(state)
    assert take(resumed, 9) == expected
    with pytest.raises(DataError, match="position"):
        resumed.load_state_dict({"epoch": 0, "position": 10_000})


def test_mirror_flips_half_the_samples():
    ds = indexed(50)
    epoch = [s for b in take(InfiniteBatches(ds, 20, mirror=True), 5) for s in b]  # 2N samples
    assert sorted(epoch) == sorted((i, f) for i in range(50) for f in (False, True))
    batch = take(InfiniteBatches(ds, 20, mirror=True, seed=7), 10)
    share = [sum(f for _, f in b) / len(b) for b in batch]
    assert 0.35 < sum(share) / len(share) < 0.65
    assert not any(f for b in take(InfiniteBatches(ds, 20), 5) for _, f in b)


def test_flipped_pixels_are_mirrored():
    images = torch.randint(0, 255, (3, 3, 8, 8), dtype=torch.uint8)
    seen = {}
    it = InfiniteBatches(ImageDataset(images), 3, mirror=True, drop_last=False)
    for _ in range(4):
        for x in next(it)[0]:
            for i in range(3):
                if torch.equal(x, images[i]):
                    seen[(i, False)] = True
                if torch.equal(x, images[i].flip(-1)):
                    seen[(i, True)] = True
    assert len(seen) == 6


def test_ranks_split_the_single_process_batch():
    ds = indexed(40)
    single = InfiniteBatches(ds, 8, seed=5, mirror=True)
    ranks = [InfiniteBatches(ds, 4, seed=5, mirror=True, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(12):
        whole = ids(next(single)[0])
        r0, r1 = (ids(next(it)[0]) for it in ranks)
        assert not set(r0) & set(r1)
        assert sorted(r0 + r1) == sorted(whole)
        assert r0 == whole[0::2] and r1 == whole[1::2]  # the documented interleaving


def test_small_dataset_and_drop_last():
    ds = indexed(3)
    with pytest.raises(DataError, match="fewer than one global batch"):
        InfiniteBatches(ds, 4)
    it = InfiniteBatches(ds, 4, drop_last=False)
    batches = take(it, 3)
    assert all(len(b) == 4 for b in batches)
    assert sorted(i for b in batches for i, _ in b) == sorted(list(range(3)) * 4)


def test_host_gather_path_matches_resident():
    ds = indexed(20)
    resident = InfiniteBatches(ds, 6, seed=2, mirror=True)
    gathered = InfiniteBatches(ds, 6, seed=2, mirror=True, gpu_cache_bytes=0)
    assert resident.resident and not gathered.resident
    for _ in range(8):
        (a, la), (b, lb) = next(resident), next(gathered)
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_batch_arguments_checked():
    with pytest.raises(DataError, match="rank"):
        InfiniteBatches(indexed(8), 2, rank=2, world_size=2)
    with pytest.raises(DataError, match="batch_size"):
        InfiniteBatches(indexed(8), 0)


def test_to_float_range():
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1)
    y = to_float(x)
    assert y.dtype == torch.float32
    assert torch.allclose(y.flatten(), torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))
    assert to_float(x, torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(TypeError, match="uint8"):
        to_float(y)


def test_in_memory_dataset_validates():
    with pytest.raises(DataError, match="uint8"):
        ImageDataset(torch.zeros(2, 3, 8, 8))
    with pytest.raises(DataError, match="1 to 16 channels"):
        ImageDataset(torch.zeros(2, 17, 8, 4, dtype=torch.uint8))
    with pytest.raises(DataError, match="labels"):
        ImageDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# The shipped flowers


def test_default_dataset_ships_500_flowers():
    path = default_dataset_path()
    assert path.is_file() and path.suffix == ".zip"
    assert path.stat().st_size < 4e6
    ds = load_image_dataset(path, 64, conditional=True)
    assert ds.images.shape == (500, 3, 64, 64) and ds.skipped == []
    assert ds.class_names == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert torch.bincount(ds.labels).tolist() == [100] * 5
    assert 40 < ds.images.float().mean() < 200 and ds.images.float().std() > 30
    small = load_image_dataset(path, 32)
    assert small.images.shape == (500, 3, 32, 32)


def test_default_dataset_credits_every_photo():
    path = default_dataset_path()
    with zipfile.ZipFile(path) as zf:
        images = sorted(n for n in zf.namelist() if n.endswith(".jpg"))
        inside = zf.read("LICENSE.txt").decode()
    text = path.with_name("flowers64_LICENSE.txt").read_text(encoding="utf-8")
    assert inside == text
    assert "CC-BY 2.0" in text and "creativecommons.org/licenses/by/2.0" in text
    assert "resized" in text
    credits = [line for line in text.splitlines() if " CC-BY" in line and "/" in line.split()[0]]
    assert sorted(line.split()[0] for line in credits) == images
    assert len(images) == 500 and len(set(images)) == 500
