"""DiffAugment: op semantics and ranges, fusion, reproducibility, gradients, no per-sample loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import projected_gan
from projected_gan.augmentations import (
    Brightness,
    Color,
    Contrast,
    Cutout,
    DiffAugment,
    Offset,
    Saturation,
    Translation,
    cut_out,
    diffaugment_ops,
    translate,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 4, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=gen(seed)) * 2 - 1


def distinct(b: int, h: int, w: int) -> torch.Tensor:
    """Images whose pixels are all different (and non-zero), so any misplacement shows."""
    return torch.arange(1, b * 3 * h * w + 1, dtype=torch.float32).view(b, 3, h, w)


# ---------------------------------------------------------------------------- construction
def test_registry_and_default_policy():
    aug = projected_gan.create("augmentations", "diffaugment", policy="color,translation,cutout")
    assert isinstance(aug, DiffAugment) and isinstance(aug, nn.Module)
    assert [type(op) for op in aug.ops] == [Color, Translation, Cutout]
    assert DiffAugment().policy == "color,translation,cutout"
    assert list(aug.parameters()) == []
    ops = ["color", "brightness", "saturation", "contrast", "translation", "cutout", "offset"]
    for name in ops:
        assert name in diffaugment_ops()
        assert isinstance(projected_gan.create("augmentations", name), nn.Module)


def test_policy_list_equals_string():
    x = images()
    a = DiffAugment("color, translation,cutout")(x, generator=gen(1))
    b = DiffAugment(["color", "translation", "cutout"])(x, generator=gen(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unknown_op_lists_valid_ones():
    with pytest.raises(ValueError, match="flip") as err:
        DiffAugment("color,flip")
    assert "translation" in str(err.value) and "cutout" in str(err.value)
    with pytest.raises(TypeError, match="policy"):
        DiffAugment(3)


def test_empty_policy_is_identity():
    x = images()
    assert torch.equal(DiffAugment("")(x, generator=gen()), x)


def test_bad_images_are_named():
    aug = DiffAugment()
    with pytest.raises(ValueError, match="x must have shape"):
        aug(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="x must be a floating"):
        aug(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="ratio"):
        Translation(ratio=2.0)
    with pytest.raises(ValueError, match="low"):
        Brightness(low=1.0, high=0.0)


def test_custom_ops_in_a_policy():
    class Negate(nn.Module):
        def forward(self, x, generator=None):
            return -x

    x = images()
    out = DiffAugment([Negate(), "translation"])(x, generator=gen(2))
    torch.testing.assert_close(out, Translation()(-x, generator=gen(2)))
    projected_gan.AUGMENTATIONS.add("negate_test", Negate, tags=("diffaugment_op",))
    try:
        torch.testing.assert_close(DiffAugment("negate_test")(x), -x)
    finally:
        projected_gan.AUGMENTATIONS.remove("negate_test")


# ----------------------------------------------------------------------------- reproducible
def test_fixed_generator_reproduces_and_seeds_differ():
    x = images(8)
    aug = DiffAugment()
    a = aug(x, generator=gen(5))
    b = aug(x, generator=gen(5))
    c = aug(x, generator=gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_each_sample_draws_its_own_parameters():
    x = images(1).expand(64, -1, -1, -1).contiguous()
    out = DiffAugment()(x, generator=gen(0))
    assert torch.unique(out.flatten(1), dim=0).shape[0] == 64


class _CountTorchCalls(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("policy", ["color,translation,cutout", "offset,brightness,cutout"])
def test_no_python_loop_over_the_batch(policy):
    """A loop over samples would make the number of torch calls grow with the batch."""
    aug = DiffAugment(policy)
    counts = []
    for batch in (1, 64):
        x = images(batch, h=8, w=8)
        with _CountTorchCalls() as mode:
            aug(x, generator=gen())
        counts.append(mode.calls)
    assert counts[0] == counts[1] > 0


# ------------------------------------------------------------------------------ gradients
def test_gradients_reach_the_input():
    x = images(4).requires_grad_(True)
    DiffAugment()(x, generator=gen(3)).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gradcheck_full_policy():
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    policy = "color,translation,cutout,offset"
    assert torch.autograd.gradcheck(lambda t: DiffAugment(policy)(t, generator=gen(4)), (x,))


def test_translation_gradient_counts_kept_pixels():
    x = torch.rand(3, 3, 10, 10, requires_grad=True)
    shift = torch.tensor([[2, -1], [0, 0], [-3, 4]])
    translate(x, shift).sum().backward()
    # Each source pixel that lands inside the image gets gradient 1, the others 0.
    kept = [(10 - 2) * (10 - 1), 100, (10 - 3) * (10 - 4)]
    assert x.grad.unique().tolist() == [0.0, 1.0]
    assert x.grad[:, 0].sum((1, 2)).tolist() == kept


# ---------------------------------------------------------------------------- colour ops
def test_brightness_adds_one_constant_per_sample_in_range():
    x = images(256, h=6, w=6)
    d = (Brightness()(x, generator=gen(1)) - x).flatten(1)
    assert (d.amax(1) - d.amin(1)).max() < 1e-5
    assert d.min() >= -0.5 and d.max() <= 0.5
    assert d.min() < -0.45 and d.max() > 0.45


def test_saturation_scales_deviation_from_channel_mean_in_range():
    x = images(256, h=6, w=6)
    out = Saturation()(x, generator=gen(2))
    m = x.mean(1, keepdim=True)
    torch.testing.assert_close(out.mean(1, keepdim=True), m, atol=1e-5, rtol=0)
    dev = x - m
    ok = dev.abs() > 0.05
    ratio = torch.where(ok, (out - m) / dev, torch.nan).flatten(1)
    lo, hi = ratio.nan_to_num(nan=9.0).amin(1), ratio.nan_to_num(nan=-9.0).amax(1)
    assert (hi - lo).max() < 1e-3
    assert lo.min() >= -1e-4 and hi.max() <= 2 + 1e-4
    assert lo.min() < 0.1 and hi.max() > 1.9


def test_contrast_scales_deviation_from_image_mean_in_range():
    x = images(256, h=6, w=6)
    out = Contrast()(x, generator=gen(3))
    mu = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(out.mean((1, 2, 3), keepdim=True), mu, atol=1e-5, rtol=0)
    dev = x - mu
    ok = dev.abs() > 0.05
    ratio = torch.where(ok, (out - mu) / dev, torch.nan).flatten(1)
    lo, hi = ratio.nan_to_num(nan=9.0).amin(1), ratio.nan_to_num(nan=-9.0).amax(1)
    assert (hi - lo).max() < 1e-3
    assert lo.min() >= 0.5 - 1e-4 and hi.max() <= 1.5 + 1e-4
    assert lo.min() < 0.6 and hi.max() > 1.4


def test_fused_color_matches_the_formulas_step_by_step():
    x = images(16)
    g = gen(7)
    b = Brightness().draw(16, x.device, g)
    s = Saturation().draw(16, x.device, g)
    k = Contrast().draw(16, x.device, g)
    y = x + b
    y = (y - y.mean(1, keepdim=True)) * s + y.mean(1, keepdim=True)
    y = (y - y.mean((1, 2, 3), keepdim=True)) * k + y.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(Color()(x, generator=gen(7)), y, atol=1e-5, rtol=1e-5)


def test_any_run_of_colour_ops_fuses_exactly():
    x = images(8)
    policy = ["contrast", "brightness", "saturation", "contrast", "brightness"]
    fused = DiffAugment(policy)(x, generator=gen(8))
    g, y = gen(8), x
    for name in policy:
        y = projected_gan.create("augmentations", name)(y, generator=g)
    torch.testing.assert_close(fused, y, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------- geometric ops
def test_translate_known_shifts_zero_fill():
    x = distinct(4, 9, 7)
    shifts = [(2, -1), (0, 0), (-3, 4), (9, 0)]
    out = translate(x, torch.tensor(shifts))
    expected = torch.zeros_like(x)
    for i, (dy, dx) in enumerate(shifts):
        h, w = 9 - abs(dy), 7 - abs(dx)
        if h > 0 and w > 0:
            ys, xs = max(dy, 0), max(dx, 0)
            yt, xt = max(-dy, 0), max(-dx, 0)
            expected[i, :, ys : ys + h, xs : xs + w] = x[i, :, yt : yt + h, xt : xt + w]
    assert torch.equal(out, expected)


def test_translate_wrap_is_a_roll():
    x = distinct(3, 6, 5)
    shifts = [(1, -2), (-4, 3), (0, 0)]
    out = translate(x, torch.tensor(shifts), wrap=True)
    for i, (dy, dx) in enumerate(shifts):
        assert torch.equal(out[i], torch.roll(x[i], shifts=(dy, dx), dims=(1, 2)))


def test_translation_op_leaves_zero_borders_up_to_one_eighth():
    b, h, w = 512, 36, 20  # limits round(36 / 8) = 5 rows, round(20 / 8) = 3 columns
    out = Translation()(torch.ones(b, 3, h, w), generator=gen(9))
    kept = out[:, 0] != 0
    rows, cols = kept.any(2), kept.any(1)
    assert torch.equal(kept, rows[:, :, None] & cols[:, None, :])  # one rectangle of ones
    assert torch.equal(out, kept[:, None].float().expand_as(out))
    dy = torch.where(rows[:, 0], -(h - rows.sum(1)), h - rows.sum(1))  # top row kept => up
    dx = torch.where(cols[:, 0], -(w - cols.sum(1)), w - cols.sum(1))
    assert sorted(dy.unique().tolist()) == list(range(-5, 6))
    assert sorted(dx.unique().tolist()) == list(range(-3, 4))


def test_cut_out_known_rectangles():
    x = distinct(3, 8, 8)
    corners = [(0, 0), (-2, 6), (3, 2)]
    out = cut_out(x, torch.tensor(corners), (3, 4))
    expected = x.clone()
    for i, (t, left) in enumerate(corners):
        expected[i, :, max(t, 0) : max(t + 3, 0), max(left, 0) : max(left + 4, 0)] = 0
    assert torch.equal(out, expected)


def _expected_cutout_fraction(size: int, ratio: float) -> float:
    """Mean zeroed fraction per axis, over the reference's centre range, squared."""
    side = int(ratio * size + 0.5)
    centres = range(size + 1 - side % 2)
    covered = [min(size, c - side // 2 + side) - max(0, c - side // 2) for c in centres]
    return (sum(covered) / len(covered) / size) ** 2


def test_cutout_zeroes_about_four_percent():
    b, size = 1024, 28  # side round(0.2 * 28) = 6
    out = Cutout()(torch.ones(b, 3, size, size), generator=gen(10))
    zero = out[:, 0] == 0
    fraction = zero.float().mean((1, 2))
    expected = _expected_cutout_fraction(size, 0.2)
    assert 0.035 < expected < 0.045
    assert abs(fraction.mean().item() - expected) < 0.002
    # Each hole is one rectangle: a full 6 x 6 square inside, clipped to 3 when its centre is
    # on the first or last row / column (centres range over [0, size] for even sides).
    rows, cols = zero.any(2), zero.any(1)
    assert torch.equal(zero, rows[:, :, None] & cols[:, None, :])
    for hit in (rows, cols):
        assert hit.sum(1).max() == 6 and hit.sum(1).min() == 3
        clipped = hit.sum(1) == 3
        assert (hit[:, 0] & clipped).any() and (hit[:, -1] & clipped).any()
    assert torch.equal(out[:, 1:], out[:, :1].expand(-1, 2, -1, -1))  # all channels alike


def test_offset_permutes_pixels():
    x = distinct(16, 8, 8)
    out = Offset()(x, generator=gen(11))
    assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    assert not torch.equal(out, x)


@pytest.mark.parametrize(
    "policy", ["translation,cutout", "cutout,translation", "offset,cutout,translation,cutout"]
)
def test_fused_geometric_run_equals_ops_one_by_one(policy):
    x = distinct(8, 12, 10)
    fused = DiffAugment(policy)(x, generator=gen(12))
    g, y = gen(12), x
    for name in policy.split(","):
        y = projected_gan.create("augmentations", name)(y, generator=g)
    assert torch.equal(fused, y)


# ------------------------------------------------------------------- dtypes and layouts
def test_channels_last_is_preserved_and_values_match():
    x = images(4)
    aug = DiffAugment()
    a = aug(x, generator=gen(13))
    b = aug(x.contiguous(memory_format=torch.channels_last), generator=gen(13))
    assert b.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_other_dtypes_keep_their_dtype(dtype):
    x = images(4)
    aug = DiffAugment()
    ref = aug(x, generator=gen(14))
    out = aug(x.to(dtype), generator=gen(14))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.02)
    # Geometric ops move values without arithmetic: exact in any dtype.
    shifted = Translation()(x.to(dtype), generator=gen(15))
    assert torch.equal(shifted, Translation()(x, generator=gen(15)).to(dtype))


def test_runs_under_autocast():
    x = images(2).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = DiffAugment()(x, generator=gen(16))
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad is not None
