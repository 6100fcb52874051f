"""Shared fixtures: throwaway plugin distributions, a private cache; skipping ``cuda`` tests."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip, with the reason, where torch sees no CUDA GPU.

    ``PROJECTED_GAN_CUDA_TESTS_ON_CPU=1`` runs them on the CPU instead (see tests/test_cuda.py).
    """
    cuda_items = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not cuda_items or os.environ.get("PROJECTED_GAN_CUDA_TESTS_ON_CPU") == "1":
        return
    import torch

    if torch.cuda.is_available():
        return
    why = f"needs a CUDA GPU; torch {torch.__version__} sees none (torch.cuda.is_available())"
    skip = pytest.mark.skip(reason=why)
    for item in cuda_items:
        item.add_marker(skip)


def write_distribution(
    root: Path,
    dist: str,
    version: str,
    modules: dict[str, str],
    entry_points: dict[str, dict[str, str]],
) -> Path:
    """Write an installed-looking distribution (modules + ``*.dist-info``) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        path = root / (module.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in eps.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return root


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """Factory: make a throwaway distribution importable for this test only."""
    import projected_gan

    made: list[str] = []

    def make(dist, version, modules, entry_points):
        root = write_distribution(tmp_path / dist, dist, version, modules, entry_points)
        monkeypatch.syspath_prepend(str(root))
        made.extend(m.split(".")[0] for m in modules)
        for registry in projected_gan.REGISTRIES.values():
            registry.refresh_plugins()
        return root

    yield make
    for registry in projected_gan.REGISTRIES.values():
        registry.refresh_plugins()
    for name in list(sys.modules):
        if name.split(".")[0] in made:
            del sys.modules[name]


@pytest.fixture
def offline(monkeypatch):
    """No network: hub offline mode, and any socket use fails at once (the test cannot hang)."""
    from huggingface_hub import constants as hub_constants  # timm's hub client

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Decoded datasets and metric statistics go to a temp folder, never ~/.cache."""

    old = os.environ.get("PROJECTED_GAN_CACHE")
    os.environ["PROJECTED_GAN_CACHE"] = str(tmp_path_factory.mktemp("pg_cache"))
    yield
    if old is None:
        os.environ.pop("PROJECTED_GAN_CACHE", None)
    else:
        os.environ["PROJECTED_GAN_CACHE"] = old


@pytest.fixture
def cache_in_tmp(tmp_path, monkeypatch):
    """A cache folder of this test's own (``pytestmark = pytest.mark.usefixtures(...)``)."""
    monkeypatch.setenv("PROJECTED_GAN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def one_cpu_thread():
    """One torch thread for a module of tiny convolutions: a second OpenMP thread only adds
    contention on a shared 2-core runner."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_image_file(path: Path, image, **kwargs) -> Path:
    """Save a PIL ``image`` at ``path`` (parent folders made), with ``Image.save``'s options."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def tiny_overrides(out_dir) -> list[str]:
    """A spec small enough to train a few steps in seconds on a 2-core CPU."""
    return [
        "data.resolution=32",
        "data.max_images=64",
        "data.mirror=true",
        "generator.ngf=8",
        "discriminator.feature_network.input_size=64",
        "train.batch=4",
        "train.kimg=0.016",
        "train.tick=0.008",
        "train.sample_every=0.008",
        "train.snapshot_every=0.008",
        "train.metrics_every=1000",
        "train.deterministic=true",
        "train.device=cpu",
        "metrics.names=[]",
        "health.diversity_samples=0",  # a lite1 pass per tick; tests that need it turn it on
        f"output.dir={out_dir}",
    ]


def adversarial_round(G, D, reals, seed: int = 0) -> None:
    """One hinge D step (Adam) and one G backward through D; asserts that both really happened.

    D's heads must change, the frozen projector(s) get no gradient, and every trainable
    parameter of G gets a finite, non-zero-overall gradient through D.
    """
    import torch

    from projected_gan.losses import HingeLoss

    loss = HingeLoss()
    z = torch.randn(reals.shape[0], G.z_dim, generator=torch.Generator().manual_seed(seed))
    opt_d = torch.optim.Adam(D.trainable_parameters(), lr=2e-4, betas=(0.0, 0.99))
    before = [p.detach().clone() for p in D.trainable_parameters()]
    with torch.no_grad():
        fakes = G(z)
    opt_d.zero_grad()
    loss.d_loss(D(reals), D(fakes))[0].backward()
    opt_d.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, D.trainable_parameters()))

    D.requires_grad_(False)
    loss.g_loss(D(G(z)))[0].backward()
    D.requires_grad_(True)
    grads = [p.grad for p in G.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    frozen = [p for p in D.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)
