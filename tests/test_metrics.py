"""Metrics: Frechet distance, KID, streaming statistics, stats cache, evaluate(), fid loading."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

import projected_gan
from projected_gan.metrics import (
    FeatureStats,
    FrechetDistance,
    FrechetInceptionDistance,
    KernelDistance,
    PrecisionRecall,
    build_metrics,
    compare_images,
    evaluate,
    evaluate_real_split,
    frechet_distance,
    kid,
    precision_recall,
    quantize_images,
)


# ----------------------------------------------------------------------------- helpers
class TinyFeatureNet(nn.Module):
    """Stand-in with the feature-network contract: [-1, 1] images -> list of maps; counts calls."""

    input_size = 16

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.calls += 1
        a = torch.relu(self.conv1(x))
        return [a, torch.relu(self.conv2(a))]


def noise_generator(seed: int = 0, resolution: int = 16, record: list | None = None):
    gen = torch.Generator().manual_seed(seed)

    def generator_fn(n: int, labels: torch.Tensor | None) -> torch.Tensor:
        if record is not None:
            record.append(labels)
        return torch.rand(n, 3, resolution, resolution, generator=gen) * 2.4 - 1.2  # clamped

    return generator_fn


def toy_dataset(n: int = 12, resolution: int = 16, fingerprint: str = "v1", labels=None):
    gen = torch.Generator().manual_seed(1)
    base = torch.rand(n, 3, 1, 1, generator=gen) * 200  # per-image colour: not uniform noise
    images = (base + torch.rand(n, 3, resolution, resolution, generator=gen) * 50).to(torch.uint8)
    return SimpleNamespace(images=images, labels=labels, fingerprint=fingerprint)


def reference_fd(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    assert np.abs(np.imag(covmean)).max() < 1e-8
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))


# -------------------------------------------------------------------------- Frechet distance
def test_frechet_distance_matches_scipy_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    x = rng.multivariate_normal(rng.normal(size=d), a @ a.T / d + 0.1 * np.eye(d), size=3000)
    y = rng.multivariate_normal(rng.normal(size=d), b @ b.T / d + 0.2 * np.eye(d), size=2500)
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    expected = reference_fd(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    # torch inputs (float32 included) are accepted and computed in float64
    got = frechet_distance(*(torch.from_numpy(t) for t in (mu1, s1, mu2, s2)))
    assert got == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_identical_statistics_is_zero_even_when_singular():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 20)) * 3 + 1  # 5 samples in 20 dims: rank-4 covariance
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    assert np.linalg.matrix_rank(sigma) == 4
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_frechet_distance_singular_diagonal_closed_form():
    # For commuting (diagonal) covariances FD = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2, zeros allowed.
    a, b = np.array([0.0, 1.0, 4.0, 0.0]), np.array([1.0, 0.0, 9.0, 0.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)
    # eps adds eps*I to both: the exact shifted closed form
    eps = 1e-3
    shifted = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a + eps) - np.sqrt(b + eps)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b), eps=eps) == pytest.approx(shifted)


def test_frechet_distance_rejects_bad_input():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma2 must have 2"):
        frechet_distance(mu, sigma, mu, np.ones(3))
    with pytest.raises(ValueError, match="mu1 contains NaN"):
        frechet_distance(np.array([0.0, np.nan, 0.0]), sigma, mu, sigma)
    with pytest.raises(ValueError, match="eps"):
        frechet_distance(mu, sigma, mu, sigma, eps=-1.0)


# ----------------------------------------------------------------------- streaming statistics
def test_feature_stats_streaming_matches_numpy_despite_large_mean():
    rng = np.random.default_rng(2)
    x = 1e4 + rng.normal(size=(1000, 7))  # mean >> spread: naive E[xx^T] - mm^T loses digits
    stats = FeatureStats()
    for start, stop in [(0, 1), (1, 333), (333, 334), (334, 1000)]:
        stats.append(torch.from_numpy(x[start:stop]).float())
    xf = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(stats.mean(), xf.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov(), np.cov(xf, rowvar=False), rtol=1e-8, atol=1e-10)
    assert stats.num_items == 1000 and stats.dim == 7


def test_feature_stats_keeps_first_max_items_and_round_trips():
    feats = torch.randn(10, 4)
    stats = FeatureStats(max_items=7)
    stats.append(feats[:5])
    stats.append(feats[5:])
    torch.testing.assert_close(stats.features(), feats[:7])
    back = FeatureStats.from_state_dict(stats.state_dict())
    np.testing.assert_array_equal(back.cov(), stats.cov())
    np.testing.assert_array_equal(back.mean(), stats.mean())
    torch.testing.assert_close(back.features(), feats[:7])
    with pytest.raises(ValueError, match="max_items"):
        FeatureStats().features()
    with pytest.raises(ValueError, match="D=3"):
        stats.append(torch.randn(2, 3))


# ------------------------------------------------------------------------------------- KID
def brute_force_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2, polynomial kernel (x.y/d + 1)^3, by explicit loops over pairs."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1) ** 3

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_kid_matches_brute_force_when_subsets_cover_everything():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(10, 5)), rng.normal(loc=0.5, size=(10, 5))
    mean, std = kid(x, y, num_subsets=4, subset_size=1000)  # clipped to 10: full permutations
    assert mean == pytest.approx(brute_force_kid(x, y), rel=1e-10)
    assert std < 1e-10 * abs(mean)


def test_kid_subsets_are_unbiased_for_the_full_estimate_with_unequal_sizes():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(10, 3)), rng.normal(loc=0.3, size=(6, 3))
    num = 3000
    mean, std = kid(torch.from_numpy(x), torch.from_numpy(y), num_subsets=num, subset_size=4)
    assert std > 0  # subsets of 4 really differ
    assert abs(mean - brute_force_kid(x, y)) < 4 * std / math.sqrt(num)
    with pytest.raises(ValueError, match="feature dims differ"):
        kid(x, rng.normal(size=(6, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        kid(x[:1], y)


# ------------------------------------------------------------------ precision and recall
def brute_force_pr(x: np.ndarray, y: np.ndarray, k: int) -> tuple[float, float]:
    """Improved precision/recall by explicit distance matrices and sorting (the paper's rule)."""

    def radii(a):
        d = np.linalg.norm(a[:, None] - a[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    d_yx = np.linalg.norm(y[:, None] - x[None], axis=-1)
    precision = np.mean([(d_yx[j] <= radii(x)).any() for j in range(len(y))])
    recall = np.mean([(d_yx[:, i] <= radii(y)).any() for i in range(len(x))])
    return float(precision), float(recall)


def test_precision_recall_matches_brute_force_and_blocks_do_not_matter(monkeypatch):
    import importlib

    # (the package exports a function of the same name as the module)
    pr_module = importlib.import_module("projected_gan.metrics.precision_recall")

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 6)), rng.normal(loc=1.5, scale=0.8, size=(30, 6))
    expected = brute_force_pr(x, y, k=3)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1  # a case that tests something
    assert precision_recall(x, y, k=3) == pytest.approx(expected, abs=1e-12)
    monkeypatch.setattr(pr_module, "_BLOCK_ELEMENTS", 50)  # one or two rows per block
    assert precision_recall(torch.from_numpy(x).float(), y, k=3) == pytest.approx(expected)


def test_precision_recall_limits():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 8))
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)
    collapsed = np.repeat(x[:2], 10, axis=0)  # 20 fakes on 2 real points: precise, no coverage
    precision, recall = precision_recall(x, collapsed)
    assert precision == 1.0 and recall < 0.2
    with pytest.raises(ValueError, match="more than 3 samples"):
        precision_recall(x[:3], x)
    with pytest.raises(ValueError, match="equal D"):
        precision_recall(x, x[:, :4])


def test_pr_metric_of_a_set_against_itself_is_one_one():
    imgs = toy_dataset(n=12).images
    net = TinyFeatureNet()
    results = compare_images(imgs, imgs, metrics="pr", device="cpu", feature_network=net)
    assert results == {"precision": 1.0, "recall": 1.0}
    other = compare_images(imgs, 255 - imgs, metrics="pr", device="cpu", feature_network=net)
    assert other["precision"] < 1.0


# ------------------------------------------------------------------------ images and registry
def test_quantize_images_maps_range_to_uint8():
    x = torch.tensor([-1.0, 1.0, -3.0, 3.0, 0.0, 1 / 127.5 - 1]).view(1, 1, 2, 3)
    assert quantize_images(x).flatten().tolist() == [0, 255, 0, 255, 128, 1]


def test_metrics_are_registered_with_defaults():
    assert {"fd", "kid", "fid", "pr"} <= set(projected_gan.METRICS.names())
    fd = projected_gan.create("metrics", "fd")
    assert isinstance(fd, FrechetDistance) and fd.feature_network == "tf_efficientnet_lite1"
    kid_metric = projected_gan.create("metrics", "kid")
    assert isinstance(kid_metric, KernelDistance) and kid_metric.space == "inception"
    assert projected_gan.METRICS.entry("kid").defaults()["subset_size"] == 1000
    assert projected_gan.METRICS.entry("pr").defaults()["k"] == 3
    fid = projected_gan.METRICS.entry("fid").defaults()
    assert fid == {"weights": None, "download": True}  # the space is fixed: no network option
    assert isinstance(projected_gan.create("metrics", "pr"), PrecisionRecall)


def test_build_metrics_routes_options():
    net = TinyFeatureNet()
    fd, k = build_metrics("fd, kid", feature_network=net, kid={"subset_size": 5}, fid={"x": 1})
    assert fd.feature_network is net and k.feature_network is net and k.subset_size == 5
    fd, k = build_metrics(["fd", "kid"], pooling="deepest", kid={"pooling": "concat"})
    assert fd.pooling == "deepest" and k.pooling == "concat"  # per-metric options win
    (fid,) = build_metrics("fid", feature_network=net, fid_weights="w.pth", kid_subset_size=3)
    assert fid.weights == "w.pth"  # options of metrics not requested are ignored
    assert isinstance(fid, FrechetInceptionDistance) and fid.space == "inception"  # not net
    (k,) = build_metrics("kid", kid_subset_size=3, fid_weights="w.pth")
    assert k.subset_size == 3
    with pytest.raises(TypeError, match="subset_sise"):
        build_metrics(("fd",), subset_sise=3)
    with pytest.raises(projected_gan.UnknownPartError, match="fdd"):
        build_metrics(("fdd",))


# ------------------------------------------------------------------------------ evaluate()
def test_evaluate_caches_real_statistics_and_invalidates_on_new_fingerprint(tmp_path):
    net = TinyFeatureNet()
    ds = toy_dataset(n=12, fingerprint="v1")
    kwargs = dict(
        metrics=("fd", "kid"),
        num_images=8,
        batch_size=4,
        device="cpu",
        cache_dir=tmp_path,
        feature_network=net,
        kid={"num_subsets": 3, "subset_size": 4},
    )
    first = evaluate(noise_generator(), ds, **kwargs)
    assert net.calls == 3 + 2  # fd and kid share one pass: 3 real batches + 2 fake batches
    assert set(first) == {"fd", "kid", "kid_std"} and first["fd"] > 0

    second = evaluate(noise_generator(), ds, **kwargs)
    assert net.calls == 5 + 2  # reals came from the cache: only the fakes were extracted
    assert second == pytest.approx(first, rel=1e-9)
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 1
    with np.load(files[0], allow_pickle=False) as data:  # plain arrays, no pickle
        assert data["features"].shape == (12, 20)

    ds.fingerprint = "v2"  # same pixels, but the dataset says it changed: recompute
    evaluate(noise_generator(), ds, **kwargs)
    assert net.calls == 7 + 5
    evaluate(noise_generator(), ds, mirror=True, **kwargs)  # mirror doubles the real passes
    assert net.calls == 12 + 6 + 2
    assert len(list(tmp_path.glob("*.npz"))) == 3

    evaluate(noise_generator(), ds, use_cache=False, **kwargs)
    assert net.calls == 20 + 5

    # no .fingerprint: the content is hashed, so changing one pixel invalidates the entry
    plain = SimpleNamespace(images=ds.images.clone(), labels=None)
    evaluate(noise_generator(), plain, **kwargs)
    evaluate(noise_generator(), plain, **kwargs)
    assert net.calls == 25 + 5 + 2
    plain.images[0, 0, 0, 0] += 1
    evaluate(noise_generator(), plain, **kwargs)
    assert net.calls == 32 + 5


def test_evaluate_draws_fake_labels_from_the_real_distribution():
    labels = torch.tensor([0] * 9 + [2] * 3)  # 75 % class 0, 25 % class 2, none of class 1
    ds = toy_dataset(labels=labels)
    seen: list[torch.Tensor] = []
    evaluate(
        noise_generator(record=seen),
        ds,
        num_images=400,
        batch_size=100,
        device="cpu",
        use_cache=False,
        feature_network=TinyFeatureNet(),
    )
    drawn = torch.cat(seen)
    assert drawn.shape == (400,) and set(drawn.tolist()) <= {0, 2}
    assert (drawn == 0).float().mean().item() == pytest.approx(0.75, abs=0.07)


def test_evaluate_rejects_wrong_generator_output():
    def bad(n, labels):
        return torch.zeros(n, 3, 8, 8)

    def uint8(n, labels):
        return torch.zeros(n, 3, 16, 16, dtype=torch.uint8)

    kw = dict(num_images=4, batch_size=4, device="cpu", use_cache=False)
    with pytest.raises(ValueError, match=r"generator_fn.* 3-channel 8x8 .* 3-channel 16x16"):
        evaluate(bad, toy_dataset(), feature_network=TinyFeatureNet(), **kw)
    with pytest.raises(ValueError, match=r"float images \(4, 3, 16, 16\) in \[-1, 1\]"):
        evaluate(uint8, toy_dataset(), feature_network=TinyFeatureNet(), **kw)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(bad, toy_dataset(), batch_size=0, feature_network=TinyFeatureNet())


def test_features_stay_float32_under_the_callers_autocast():
    ds = toy_dataset()
    kw = dict(num_images=8, batch_size=8, device="cpu", use_cache=False)
    plain = evaluate(noise_generator(), ds, feature_network=TinyFeatureNet(), **kw)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as inside a bf16 training step
        mixed = evaluate(noise_generator(), ds, feature_network=TinyFeatureNet(), **kw)
    assert mixed == pytest.approx(plain, rel=1e-9)


def test_default_fd_space_is_pooled_efficientnet_lite1_at_224():
    (fd,) = build_metrics("fd")
    ext = fd.extractor()
    assert ext.image_size == 224 and "tf_efficientnet_lite1" in ext.identity
    with torch.inference_mode():
        feats = ext(toy_dataset(n=2, resolution=32).images)
    assert feats.shape == (2, 24 + 40 + 112 + 320) and torch.isfinite(feats).all()


def skimage_crops(per_image: int = 8, resolution: int = 64) -> torch.Tensor:
    """Real photos (bundled with scikit-image): random crops at 1/2..1/4 of the short side."""
    from skimage import data

    gen = torch.Generator().manual_seed(0)
    crops = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina"):
        img = torch.from_numpy(np.ascontiguousarray(getattr(data, name)()[..., :3]))
        img = img.permute(2, 0, 1)[None].float()
        short = min(img.shape[-2:])
        img = F.interpolate(img, scale_factor=2 * resolution / short, mode="bilinear",
                            antialias=True)  # fmt: skip
        h, w = img.shape[-2:]
        for _ in range(per_image):
            top = int(torch.randint(h - resolution + 1, (1,), generator=gen))
            left = int(torch.randint(w - resolution + 1, (1,), generator=gen))
            crops.append(img[..., top : top + resolution, left : left + resolution])
    return torch.cat(crops).round().clamp(0, 255).to(torch.uint8)


def blob_generator(seed: int = 0, resolution: int = 64):
    """Untrained-generator-like fakes: smooth random colour fields plus a little pixel noise."""
    gen = torch.Generator().manual_seed(seed)

    def generator_fn(n, labels):
        low = torch.randn(n, 3, 4, 4, generator=gen) * 0.5
        up = F.interpolate(low, size=(resolution, resolution), mode="bilinear")
        return up + 0.1 * torch.randn(n, 3, resolution, resolution, generator=gen)

    return generator_fn


def test_real_halves_are_closer_than_real_vs_fake_with_stand_in_network():
    ds = SimpleNamespace(images=skimage_crops(), labels=None, fingerprint="skimage-crops")
    net = TinyFeatureNet()
    split = evaluate_real_split(ds, batch_size=24, device="cpu", feature_network=net)
    fake = evaluate(blob_generator(), ds, num_images=48, batch_size=24, device="cpu",
                    use_cache=False, feature_network=net)  # fmt: skip
    assert 0 < split["fd"] < fake["fd"] / 3


@pytest.mark.slow
def test_flowers_real_halves_much_closer_than_untrained_generator(tmp_path):
    from projected_gan.data import default_dataset_path, load_image_dataset

    flowers = load_image_dataset(default_dataset_path(), 64, cache_dir=tmp_path)
    pick = torch.randperm(len(flowers), generator=torch.Generator().manual_seed(0))[:64]
    ds = SimpleNamespace(images=flowers.images[pick], labels=None, fingerprint="flowers-64-of-500")
    (fd,) = build_metrics("fd")  # tf_efficientnet_lite1, pretrained weights shipped offline
    split = evaluate_real_split(ds, metrics=[fd], batch_size=32, device="cpu")["fd"]

    G = projected_gan.create("generators", "fastgan_lite", img_resolution=64).eval()
    z_gen = torch.Generator().manual_seed(0)

    def untrained(n, labels):
        return G(torch.randn(n, G.z_dim, generator=z_gen), labels)

    opts = dict(metrics=[fd], num_images=32, batch_size=32, device="cpu", cache_dir=tmp_path)
    fake = evaluate(untrained, ds, **opts)["fd"]
    noise = evaluate(noise_generator(resolution=64), ds, **opts)["fd"]  # reals from the cache
    print(f"FD lite1: real half/half {split:.1f}, untrained G {fake:.1f}, noise {noise:.1f}")
    assert 0 < split < fake / 3 and split < noise / 3
