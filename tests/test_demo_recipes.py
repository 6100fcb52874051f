"""benchmarks/demo_recipes.py and texture.py: valid candidates, a texture score that sees dots."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from projected_gan import ExperimentSpec

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recipes():
    yield _load("demo_recipes")
    sys.modules.pop("demo_recipes", None)


@pytest.fixture(scope="module")
def texture():
    yield _load("texture")
    sys.modules.pop("texture", None)


def test_every_candidate_is_a_valid_spec(recipes):
    for name, overrides in recipes.CANDIDATES.items():
        spec = ExperimentSpec.load(preset=recipes.PRESET, overrides=overrides)
        assert spec.train.batch > 0, name


def test_before_is_the_old_minimal_recipe(recipes):
    spec = ExperimentSpec.load(preset=recipes.PRESET, overrides=recipes.CANDIDATES["before"])
    assert spec.data.path is None and spec.data.resolution == 64
    assert spec.generator.kwargs["ngf"] == 32 and spec.train.batch == 16
    fnet = spec.discriminator.feature_network.kwargs
    assert fnet["input_size"] == 128 and fnet["resize"] == "upsample_only" and fnet["blur"] == 0
    assert spec.discriminator.augment.kwargs["policy"] == "color,translation,cutout"


def test_the_preset_is_the_measured_winner(recipes):
    """minimal_cpu is fnet64 (docs/demo_recipe.md): the same spec."""
    preset = ExperimentSpec.load(preset=recipes.PRESET).model_dump()
    winner = ExperimentSpec.load(preset=recipes.PRESET, overrides=recipes.CANDIDATES["fnet64"])
    winner = winner.model_dump()
    assert winner["discriminator"]["feature_network"].pop("blur") == 0  # the default
    assert winner == preset


def _photos(n: int = 64, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random colour fields, uint8 (n, 3, size, size): no periodic texture."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=gen)
    x = torch.nn.functional.interpolate(low, size=size, mode="bicubic", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def test_texture_score_finds_a_dot_grid_and_its_period(texture):
    reals = _photos()
    same = texture.texture_scores(reals, reals)
    assert same["hf_excess"] == pytest.approx(0.0, abs=1e-6)
    assert same["peak"] == pytest.approx(0.0, abs=1e-6)

    dots = torch.zeros(1, 1, 32, 32)
    dots[..., ::4, ::4] = 40.0  # a bright dot every 4 pixels
    textured = (reals.float() + dots).clamp(0, 255).to(torch.uint8)
    score = texture.texture_scores(textured, reals)
    assert score["hf_excess"] > 1.0 and score["peak"] > 2.0
    # The peak is a harmonic of the 4-pixel grid (period 4, 2 or 4/3 along some axis).
    periods = [p for p in score["peak_period"] if p is not None]
    assert periods and all(abs(4 / p - round(4 / p)) < 0.05 for p in periods)

    other = texture.texture_scores(_photos(seed=1), reals)  # more of the same kind: no excess
    assert abs(other["hf_excess"]) < 0.2 and other["peak"] < 1.0


def test_band_shares_and_blur_moves_the_gradient_off_the_top_band(texture):
    power = torch.zeros(8, 8)
    power[0, 1], power[4, 4] = 3.0, 1.0  # period 8 px (band [1/8, 1/4)) and Nyquist
    assert texture.band_shares(power) == pytest.approx([0, 0, 0.75, 0.25])

    from projected_gan import ProjectedDiscriminator

    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    top = []
    for blur in (0, 1):
        fnet = {"name": "tf_efficientnet_lite0", "input_size": 64, "blur": blur}
        D = ProjectedDiscriminator(feature_network=fnet, augment=None, img_resolution=32)
        shares = texture.band_shares(texture.gradient_power(D, x))
        assert sum(shares) == pytest.approx(1.0)
        top.append(shares[-1])
    assert top[1] < 0.5 * top[0]  # the transposed blur damps periods under 4 px by >= 4x
