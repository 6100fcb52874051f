"""``projected-gan export``: self-describing folders, ONNX and TorchScript graphs, model cards."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from PIL import Image

import projected_gan
from projected_gan.checkpoint import save_checkpoint
from projected_gan.export import (
    ExportError,
    export_checkpoint,
    export_generator,
    read_export_config,
)
from projected_gan.generators import SUPPORTED_RESOLUTIONS
from projected_gan.generators.sampling import latents_from_seeds
from projected_gan.registry import part_config
from tests.conftest import tiny_overrides

TOL = 1e-3
SG2_SMALL = {"channel_base": 1024, "channel_max": 32, "z_dim": 16, "w_dim": 32}


def make_g(name="fastgan_lite", res=32, c_dim=0, **kw):
    torch.manual_seed(0)
    kw = {"ngf": 16, **kw} if name.startswith("fastgan") else {**SG2_SMALL, **kw}
    return projected_gan.create("generators", name, img_resolution=res, c_dim=c_dim, **kw).eval()


def inputs(G, seeds):
    """z for the seeds and, when conditional, one-hot labels ``seed % c_dim``."""
    z = latents_from_seeds(list(seeds), G.z_dim)
    if not G.c_dim:
        return z, None
    return z, torch.nn.functional.one_hot(torch.tensor(list(seeds)) % G.c_dim, G.c_dim).float()


@torch.no_grad()
def reference(G, seeds, psi=1.0):
    """What every graph must reproduce: constant noise, psi, clamped to [-1, 1]."""
    z, c = inputs(G, seeds)
    return G(z, c, truncation_psi=psi, noise_mode="const").clamp(-1, 1)


def run_onnx(path, G, seeds):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    z, c = inputs(G, seeds)
    feed = {"z": z.numpy()} | ({} if c is None else {"c": c.numpy()})
    return torch.from_numpy(session.run(None, feed)[0])


def run_torchscript(path, G, seeds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still loads
        module = torch.jit.load(str(path))
    z, c = inputs(G, seeds)
    with torch.no_grad():
        return module(z) if c is None else module(z, c)


def hand_checkpoint(tmp_path, G, spec, nimg=4000):
    """A checkpoint as an older run wrote it: G, G_ema, Adam state, the spec, no part configs."""
    opt = torch.optim.Adam(G.parameters())
    G.train()
    G(*inputs(G, range(2))).square().mean().backward()
    opt.step()
    G.eval()
    meta = {"spec": spec, "num_classes": G.c_dim, "nimg": nimg}
    path = tmp_path / "run" / "checkpoints" / f"snapshot-{nimg:09d}.safetensors"
    save_checkpoint(path, models={"G": G, "G_ema": G}, optimizers={"G": opt}, meta=meta)
    return path


def needs_onnx():
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason="the onnx extra is not installed (CI installs it)")


# ------------------------------------------------------------------- config and reloading


def test_registry_records_the_config_and_the_export_names_it(tmp_path):
    G = make_g(c_dim=3)
    config = part_config(G)  # the given arguments, with the defaults filled in
    assert (config["kind"], config["name"]) == ("generators", "fastgan_lite")
    assert {"img_resolution": 32, "c_dim": 3, "ngf": 16}.items() <= config["kwargs"].items()
    export_generator(G, tmp_path / "out", num_samples=4)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["generator"] == part_config(G)
    assert config["interface"]["c_dim"] == 3
    assert config["export"]["check"]["max_abs_diff"] == 0.0


def test_old_checkpoint_export_reloads_identically_without_the_run(tmp_path):
    G = make_g(c_dim=2, ngf=8)
    spec = {"generator": {"name": "fastgan_lite", "ngf": 8}, "data": {"resolution": 32}}
    ckpt = hand_checkpoint(tmp_path, G, spec)
    result = export_checkpoint(ckpt.parent.parent, tmp_path / "out", num_samples=0)
    assert result.max_abs_diff == 0.0
    moved = shutil.move(tmp_path / "out", tmp_path / "elsewhere")  # the folder alone suffices
    shutil.rmtree(tmp_path / "run")
    G2 = projected_gan.load_generator(moved)
    saved = read_export_config(moved)["training"]["spec"]  # the spec travels with the folder
    assert saved["generator"]["name"] == "fastgan_lite" and saved["data"]["resolution"] == 32
    z, c = inputs(G, range(6))
    with torch.no_grad():
        assert torch.equal(G(z, c, noise_mode="const"), G2(z, c, noise_mode="const"))
        assert torch.equal(G(z, c.argmax(1)), G2(z, c.argmax(1)))  # index labels too


def test_stylegan2_truncation_after_export_equals_before(tmp_path):
    G = make_g("stylegan2", c_dim=0)
    G.train()
    with torch.no_grad():  # track a real w_avg, as training does
        for _ in range(3):
            G.mapping(torch.randn(8, G.z_dim))
    G.eval()
    assert G.mapping_network.w_avg.abs().sum() > 0
    export_generator(G, tmp_path / "out", truncation_psi=0.5, num_samples=4)
    G2 = projected_gan.load_generator(tmp_path / "out")
    assert torch.equal(G2.mapping_network.w_avg, G.mapping_network.w_avg)
    for psi in (0.5, 0.7):
        assert torch.equal(reference(G2, range(4), psi), reference(G, range(4), psi))
    assert not torch.allclose(reference(G2, range(4), 0.5), reference(G2, range(4), 1.0))


def test_export_folder_errors_are_clear(tmp_path):
    G = make_g()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"busy is not empty"):
        export_generator(G, tmp_path / "busy")
    with pytest.raises(ExportError, match=r"--trunc 0.7: 'fastgan_lite' has no mapping network"):
        export_generator(G, tmp_path / "out", truncation_psi=0.7)
    with pytest.raises(ExportError, match=r"format must be one of"):
        export_generator(G, tmp_path / "out", format="tflite")

    class Unregistered(projected_gan.generators.FastGANGenerator):
        """A user's subclass: no registered name, so no config to rebuild it from."""

    plain = Unregistered(img_resolution=32, ngf=8)
    with pytest.raises(ExportError, match=r"not built by the registry"):
        export_generator(plain, tmp_path / "out")
    export_generator(G, tmp_path / "ts", format="torchscript", num_samples=0)
    with pytest.raises(ExportError, match=r"torchscript export without model.safetensors"):
        projected_gan.load_generator(tmp_path / "ts")
    # Re-exporting into an export folder replaces it, leaving no stale model file behind.
    export_generator(G, tmp_path / "ts", format="safetensors", num_samples=0)
    assert sorted(p.name for p in (tmp_path / "ts").iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]


# ------------------------------------------------------------------------------- graphs


def test_torchscript_matches_pytorch_with_noise_labels_and_truncation(tmp_path):
    for name, c_dim, psi in (("fastgan", 3, 1.0), ("stylegan2", 4, 0.7)):
        G = make_g(name, c_dim=c_dim)
        out = tmp_path / name
        result = export_generator(G, out, format="torchscript", truncation_psi=psi, num_samples=0)
        assert result.max_abs_diff <= TOL
        for seeds in (range(1), range(7)):  # traced at batch 2: other batch sizes work too
            diff = run_torchscript(out / "model.torchscript.pt", G, seeds) - reference(
                G, seeds, psi
            )
            assert diff.abs().max() <= TOL


def test_onnx_matches_pytorch_fastgan_lite_unconditional(tmp_path):
    needs_onnx()
    G = make_g("fastgan_lite")
    result = export_generator(G, tmp_path / "out", format="onnx", num_samples=0)
    assert result.max_abs_diff <= TOL
    for seeds in (range(1), range(3, 10)):
        got = run_onnx(tmp_path / "out" / "model.onnx", G, seeds)
        assert got.shape == (len(seeds), 3, 32, 32)
        assert (got - reference(G, seeds)).abs().max() <= TOL
        assert got.min() >= -1 and got.max() <= 1


def test_onnx_matches_pytorch_stylegan2_conditional_truncated(tmp_path):
    needs_onnx()
    G = make_g("stylegan2", c_dim=3)
    G.mapping_network.w_avg.normal_()  # a non-trivial w_avg, so truncation moves the images
    result = export_generator(G, tmp_path / "out", format="onnx", truncation_psi=0.6)
    assert result.max_abs_diff <= TOL
    got = run_onnx(tmp_path / "out" / "model.onnx", G, range(6))
    assert (got - reference(G, range(6), 0.6)).abs().max() <= TOL
    assert (got - reference(G, range(6), 1.0)).abs().max() > 10 * TOL  # psi is really baked in


@pytest.mark.parametrize(
    "res",
    [r if r <= 256 else pytest.param(r, marks=pytest.mark.slow) for r in SUPPORTED_RESOLUTIONS],
)
def test_fastgan_exports_at_every_resolution(tmp_path, res):
    G = make_g("fastgan", res=res, ngf=8)  # big blocks (noise layers), the smallest width
    export_generator(G, tmp_path / "st", check_batch=1, num_samples=0)
    G2 = projected_gan.load_generator(tmp_path / "st")
    assert torch.equal(reference(G2, [3]), reference(G, [3]))
    result = export_generator(
        G, tmp_path / "ts", format="torchscript", check_batch=1, num_samples=0
    )
    assert result.max_abs_diff <= TOL
    got = run_torchscript(tmp_path / "ts" / "model.torchscript.pt", G, [3])
    assert got.shape == (1, 3, res, res)
    assert (got - reference(G, [3])).abs().max() <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("res", [SUPPORTED_RESOLUTIONS[0], SUPPORTED_RESOLUTIONS[-1]])
def test_fastgan_onnx_at_smallest_and_largest_resolution(tmp_path, res):
    needs_onnx()
    G = make_g("fastgan_lite", res=res, ngf=8)
    export_generator(G, tmp_path / "out", format="onnx", check_batch=1, num_samples=0)
    got = run_onnx(tmp_path / "out" / "model.onnx", G, [5])
    assert (got - reference(G, [5])).abs().max() <= TOL


# --------------------------------------------------------- a real run, the CLI and the card


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real (tiny) training run: fastgan_lite 32 px, ngf 16, 8 images seen, fd logged."""
    out = tmp_path_factory.mktemp("export_runs")
    overrides = [o for o in tiny_overrides(out) if not o.startswith("generator.ngf")]
    spec = projected_gan.ExperimentSpec.load(
        None, preset="minimal_cpu", overrides=[*overrides, "generator.ngf=16"]
    )
    run = projected_gan.build_from_spec(spec).fit(kimg=0.008, progress=False)
    return run


@pytest.mark.slow
def test_cli_export_of_a_run_is_small_reloads_identically_and_has_a_card(
    tiny_run, tmp_path, capsys
):
    from projected_gan.cli import main

    # A metric record as the trainer writes it (metrics are off in the tiny run to save time).
    record = {"kimg": 0.008, "seconds": 1.0, "eval_seconds": 0.5, "fd": 123.25}
    (tiny_run / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    out = tmp_path / "export"
    assert main(["export", str(tiny_run), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff 0" in printed

    (ckpt,) = (tiny_run / "checkpoints").glob("snapshot-*.safetensors")
    folder_bytes = sum(p.stat().st_size for p in out.iterdir())
    assert folder_bytes < ckpt.stat().st_size / 3, (folder_bytes, ckpt.stat().st_size)

    G_run = projected_gan.load_generator(tiny_run)
    G_exp = projected_gan.load_generator(out)
    assert torch.equal(reference(G_exp, range(8)), reference(G_run, range(8)))
    assert read_export_config(out)["training"]["spec"]["generator"]["ngf"] == 16

    card = (out / "README.md").read_text()
    for expected in (
        "`fastgan_lite`",
        "32x32",
        "8 (0.008 kimg)",
        "`flowers64.zip (shipped)`, 64 images",
        "| fd | 123.25 | tf_efficientnet_lite1 |",
        "![samples](samples.png)",
        "## Training spec",
        "ngf: 16",
    ):
        assert expected in card, expected
    assert Image.open(out / "samples.png").size == (4 * 32, 4 * 32)

    # `generate` takes the export folder like a run folder, with the same pictures.
    for folder, grid in ((out, "e.png"), (tiny_run, "r.png")):
        args = ["generate", str(folder), "--seeds", "0-3", "--grid", str(tmp_path / grid)]
        assert main(args) == 0
    assert Image.open(tmp_path / "e.png").tobytes() == Image.open(tmp_path / "r.png").tobytes()

    # The CLI's error path: exit 2 with the reason, nothing half-written.
    assert main(["export", str(tiny_run), str(out), "--trunc", "0.5"]) == 2
    assert "has no mapping network" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file()


# ------------------------------------------------------------- H x W sizes, 1-16 channels
# (name, img_resolution, img_channels): wide RGBA and tall grayscale generators. ONNX export is
# slow for StyleGAN2 (13 s here; test_onnx_matches_pytorch_stylegan2_* covers its graph).
NON_SQUARE = [("stylegan2", (32, 64), 4), ("fastgan", (64, 32), 1)]


def test_non_square_export_records_its_size_and_reloads(tmp_path):
    G = make_g("stylegan2", res=(32, 64), c_dim=2, img_channels=4)
    export_generator(G, tmp_path / "out", num_samples=4)
    config = read_export_config(tmp_path / "out")
    assert config["generator"]["kwargs"]["img_resolution"] == [32, 64]
    iface = config["interface"]
    assert (iface["img_resolution"], iface["img_size"], iface["img_channels"]) == (
        [32, 64],
        [32, 64],
        4,
    )
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| resolution | 32x64 (height x width), 4 channel(s) |" in card
    assert "generator, 32x64" in card
    with Image.open(tmp_path / "out" / "samples.png") as samples:  # 4 RGBA images, RGB view
        assert samples.mode == "RGB" and samples.size == (2 * 64, 2 * 32)
    G2 = projected_gan.load_generator(tmp_path / "out")
    assert G2.img_resolution == (32, 64) and G2.img_channels == 4
    assert torch.equal(reference(G2, range(3)), reference(G, range(3)))
    assert reference(G2, range(3)).shape == (3, 4, 32, 64)
    square = make_g("fastgan_lite", res=32)
    export_generator(square, tmp_path / "sq", num_samples=0)
    iface = read_export_config(tmp_path / "sq")["interface"]
    assert (iface["img_resolution"], iface["img_size"]) == (32, [32, 32])  # one side, as before


@pytest.mark.parametrize(("name", "size", "channels"), NON_SQUARE)
def test_torchscript_of_non_square_generators(tmp_path, name, size, channels):
    G = make_g(name, res=size, img_channels=channels, **({"ngf": 8} if name == "fastgan" else {}))
    result = export_generator(G, tmp_path / "ts", format="torchscript", num_samples=0)
    assert result.max_abs_diff <= TOL
    got = run_torchscript(tmp_path / "ts" / "model.torchscript.pt", G, range(3))
    assert got.shape == (3, channels, *size)
    assert (got - reference(G, range(3))).abs().max() <= TOL


@pytest.mark.parametrize(
    ("img_resolution", "message"),
    [
        ([32, 5000], r"img_resolution\[1\] = 5000 is outside 4\.\.4096"),
        ([2, 64], r"img_resolution\[0\] = 2 is outside 4\.\.4096"),
        ([32, 64, 3], r"img_resolution = \[32, 64, 3\] is neither one side nor \[height, width\]"),
        ([32, 68], r"img_resolution 32x68 \(height x width\) is not supported"),
    ],
)
def test_recorded_sizes_are_checked_per_side(tmp_path, img_resolution, message):
    export_generator(make_g("fastgan_lite", res=(32, 64), ngf=8), tmp_path / "out", num_samples=0)
    path = tmp_path / "out" / "config.json"
    config = json.loads(path.read_text())
    config["generator"]["kwargs"]["img_resolution"] = img_resolution
    path.write_text(json.dumps(config))
    with pytest.raises(ExportError, match=message):
        projected_gan.load_generator(tmp_path / "out")
