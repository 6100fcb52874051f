"""Non-square sizes and channel counts end to end, for every generator.

Each generator trains two runs that between them hold both sizes (32x64 landscape, 64x32
portrait), both channel counts (1: grayscale from RGB files; 4: RGBA files, alpha kept) and both
unconditional and conditional data: a few steps, a checkpoint, an exact-shape resume, ``generate``
(PNG files of the right mode and size), ``export`` (a folder reloaded at the same shape, and for
one run of each generator ONNX, run with onnxruntime and compared with PyTorch). The 4-channel
runs also try D's channel options between them: the learned RGB map and the second projected
branch for the extra channel.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import projected_gan
from projected_gan import ExperimentSpec, Trainer, build_from_spec
from projected_gan.cli import main
from projected_gan.export import read_export_config
from projected_gan.training.init_source import InitError
from tests.conftest import tiny_overrides

# (height, width, channels, conditional, D's channel options)
LANDSCAPE_GRAY = (32, 64, 1, False, [])
PORTRAIT_RGBA = (64, 32, 4, True, [])
RUNS = {
    # one run measures FD during training as well, on the RGB view of 1-channel images
    "fastgan_lite": [
        (
            *LANDSCAPE_GRAY[:4],
            ["metrics.names=[fd]", "metrics.num_images=8", "train.metrics_every=0.008"],
        ),
        PORTRAIT_RGBA,
    ],
    "fastgan": [LANDSCAPE_GRAY, (*PORTRAIT_RGBA[:4], ["discriminator.extra_branch=true"])],
    "stylegan2": [LANDSCAPE_GRAY, (*PORTRAIT_RGBA[:4], ["discriminator.rgb=learned"])],
}
CASES = [(g, *run) for g, runs in RUNS.items() for run in runs]
# The run of each generator that goes to ONNX: both sizes and channel counts among the three.
ONNX_SIZE = {"fastgan_lite": (64, 32), "fastgan": (32, 64), "stylegan2": (64, 32)}
GENERATOR_ARGS = {
    "fastgan_lite": ["generator.ngf=8"],
    "fastgan": ["generator.ngf=8"],
    "stylegan2": [
        "generator={name: stylegan2, z_dim: 32, w_dim: 32, channel_base: 1024, channel_max: 32}",
    ],
}
PNG_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def write_images(folder, classes: int, rgba: bool, count: int = 8) -> None:
    """``count`` 80x80 photos-to-be per class (class sub-folders when ``classes`` > 1): smooth
    colour ramps, RGBA with a varying alpha when ``rgba``. Every fit crops them to the runs'
    sizes without upscaling."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:80, 0:80].astype(np.float32)
    for k in range(classes):
        sub = folder / f"class{k}" if classes > 1 else folder
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            a, b = rng.uniform(0.2, 1.0, 2)
            rgb = np.stack([xx / 80 * a, yy / 80 * b, np.full_like(xx, (k + 1) / (classes + 1))])
            pixels = [rgb, (yy + xx)[None] / 128] if rgba else [rgb]
            array = (np.concatenate(pixels).clip(0, 1) * 255).astype(np.uint8)
            Image.fromarray(array.transpose(1, 2, 0)).save(sub / f"{i:03d}.png")


def run_spec(tmp_path, data, generator, h, w, channels, conditional, extra) -> ExperimentSpec:
    overrides = [
        *tiny_overrides(tmp_path / "runs"),
        *GENERATOR_ARGS[generator],
        f"data.path={data}",
        f"data.resolution=[{h}, {w}]",
        f"data.channels={channels}",
        f"data.conditional={str(conditional).lower()}",
        "data.max_images=null",
        "data.min_images=8",
        "discriminator.feature_network.pretrained=false",
        "train.kimg=0.008",
        "health.diversity_samples=4",  # the probe embeds reals and fakes of C channels too
        *extra,
    ]
    return ExperimentSpec.load(preset="minimal_cpu", overrides=overrides)


@pytest.mark.parametrize(
    ("generator", "h", "w", "channels", "conditional", "extra"),
    CASES,
    ids=[f"{c[0]}-{c[1]}x{c[2]}-c{c[3]}-{'cond' if c[4] else 'uncond'}" for c in CASES],
)
def test_train_resume_generate_export(tmp_path, generator, h, w, channels, conditional, extra):
    data = tmp_path / "data"
    write_images(data, classes=2 if conditional else 1, rgba=channels == 4)
    spec = run_spec(tmp_path, data, generator, h, w, channels, conditional, extra)

    # A few steps and a checkpoint: G makes (B, C, H, W), D judges them.
    trainer = build_from_spec(spec)
    assert trainer.G.img_size == (h, w) and trainer.G.img_channels == channels
    trainer.fit(progress=False)
    run = trainer.run_dir
    assert trainer.nimg == 8
    ticks = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any(t.get("diversity", 0) > 0 for t in ticks), ticks[-1]
    if "metrics.names=[fd]" in extra:
        (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert record["fd"] > 0
    fakes = trainer.G_ema(
        torch.randn(2, trainer.G.z_dim), trainer.G.random_labels(2) if conditional else None
    )
    assert fakes.shape == (2, channels, h, w)
    samples = sorted((run / "samples").glob("*.png"))
    assert samples, "no sample grid"
    with Image.open(samples[-1]) as grid:  # the RGB view (grayscale as L), tiled for the aspect
        assert grid.mode == ("L" if channels == 1 else "RGB")
        assert grid.size[0] % w == 0 and grid.size[1] % h == 0

    # Resume: the same shapes come back from the checkpoint and training goes on.
    resumed = Trainer.resume(run)
    assert resumed.nimg == 8
    assert resumed.G.img_size == (h, w) and resumed.G.img_channels == channels
    for a, b in zip(trainer.G_ema.state_dict().values(), resumed.G_ema.state_dict().values()):
        assert torch.equal(a, b)
    resumed.fit(kimg=0.016, progress=False)
    assert resumed.nimg == 16

    # generate: one PNG per seed, all channels kept (L for 1, RGBA for 4).
    out = tmp_path / "gen"
    args = ["generate", str(run), "--seeds", "0-1", "--outdir", str(out)]
    if conditional:
        args += ["--class", "1"]
    assert main(args) == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == 2
    with Image.open(files[0]) as image:
        assert image.size == (w, h) and image.mode == PNG_MODES[channels]

    # export: the folder (safetensors) reloads at the run's shape; ONNX, once per generator
    # (its export takes seconds), gives (B, C, H, W) equal to PyTorch's.
    folder = tmp_path / "export"
    onnx = (h, w) == ONNX_SIZE[generator]
    assert main(["export", str(run), str(folder), *(["--format", "onnx"] if onnx else [])]) == 0
    interface = read_export_config(folder)["interface"]
    assert interface["img_size"] == [h, w] and interface["img_channels"] == channels
    if not onnx:
        exported = projected_gan.load_generator(folder)
        assert exported.img_size == (h, w) and exported.img_channels == channels
        return
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (CI installs it)")
    import onnxruntime as ort

    G = projected_gan.load_generator(run)  # the G_ema that was exported
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3))
    feeds = {"z": z.numpy()}
    names = [i.name for i in session.get_inputs()]
    c = torch.tensor([1]) if conditional else None
    if conditional:
        feeds[names[1]] = torch.nn.functional.one_hot(c, G.c_dim).float().numpy()
    (got,) = session.run(None, {k: v for k, v in feeds.items() if k in names})
    assert got.shape == (1, channels, h, w)
    with torch.no_grad():
        want = G(z, c, noise_mode="const").clamp(-1, 1)  # as every exported graph
    np.testing.assert_allclose(got, want.numpy(), atol=2e-4, rtol=1e-3)


@pytest.mark.filterwarnings("ignore:.*were upscaled")  # 80 px sources, a 64x128 run
def test_init_from_another_image_shape_is_refused(tmp_path):
    data = tmp_path / "data"
    write_images(data, classes=1, rgba=False)
    source = build_from_spec(run_spec(tmp_path, data, "fastgan_lite", 32, 64, 1, False, []))
    source.fit(progress=False)
    init = [f"train.init.source={source.run_dir}"]
    for h, w, channels in ((64, 32, 1), (32, 64, 3)):  # another aspect; other channels
        spec = run_spec(tmp_path, data, "fastgan_lite", h, w, channels, False, init)
        with pytest.raises(InitError, match=r"makes 32x64 images with 1 channel\(s\), this run"):
            build_from_spec(spec)
    # the same aspect at twice the scale: the common blocks are copied, as between squares
    spec = run_spec(tmp_path, data, "fastgan_lite", 64, 128, 1, False, init)
    assert build_from_spec(spec).init_record["modules"]["G"]["copied"] > 0
    # partial: the same start is taken, copying what matches
    spec = run_spec(
        tmp_path, data, "fastgan_lite", 64, 32, 1, False, [*init, "train.init.partial=true"]
    )
    assert build_from_spec(spec).init_record["modules"]["G"]["copied"] > 0


def test_resume_with_other_channels_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    write_images(data, classes=1, rgba=False)
    trainer = build_from_spec(run_spec(tmp_path, data, "fastgan_lite", 32, 64, 1, False, []))
    trainer.fit(progress=False)
    code = main(
        ["train", "--resume", str(trainer.run_dir), "--set", "data.channels=3", "--no-progress"]
    )
    assert code == 2
    assert "data.channels" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("generator", "size", "why"),
    [
        ("fastgan_lite", "[64, 88]", "a multiple of a quarter of the short side"),
        ("stylegan2", "[32, 256]", "at most 4x it"),
        ("fastgan", "48", "the short side one of 32, 64"),
    ],
)
def test_unsupported_sizes_are_one_line_and_exit_2(tmp_path, capsys, generator, size, why):
    code = main(
        [
            "train",
            "--preset",
            "minimal_cpu",
            "--dry-run",
            "--set",
            f"generator={{name: {generator}}}",
            "--set",
            f"data.resolution={size}",
            "--set",
            f"output.dir={tmp_path}",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    # one line naming the field, the generator and the rule
    assert len(err.splitlines()) == 1, err
    assert f"invalid spec: data.resolution: {generator}: size" in err and why in err


def test_a_recorded_spec_keeps_the_size_and_channels(tmp_path):
    data = tmp_path / "data"
    write_images(data, classes=1, rgba=True)
    spec = run_spec(tmp_path, data, "fastgan_lite", 64, 32, 4, False, [])
    trainer = build_from_spec(spec)
    written = json.loads(json.dumps(trainer.spec.to_dict()))
    assert written["data"]["resolution"] == [64, 32] and written["data"]["channels"] == 4
    assert ExperimentSpec.validate_dict(written).data.size == (64, 32)
