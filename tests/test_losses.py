"""Adversarial losses and the R1/R2 penalties: exact values, gradients, dtypes, errors."""

from __future__ import annotations

import math

import pytest
import torch

import projected_gan
from projected_gan.losses import (
    GradientPenalty,
    HingeLoss,
    LSGANLoss,
    NonSaturatingLoss,
    gradient_penalty,
)

REAL = [[0.5, -2.0], [1.5, 0.0]]
FAKE = [[-0.5, 2.0], [-3.0, 0.25]]
ADVERSARIAL = ["hinge", "nonsaturating", "lsgan"]


def _t(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _flat(values: list[list[float]]) -> list[float]:
    return [v for row in values for v in row]


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_hinge_exact_values():
    loss = projected_gan.create("losses", "hinge")
    d_real, logs_r = loss.d_loss_real(_t(REAL))
    d_fake, logs_f = loss.d_loss_fake(_t(FAKE))
    g, logs_g = loss.g_loss(_t(FAKE))
    # relu(1 - [0.5, -2, 1.5, 0]) = [0.5, 3, 0, 1]
    # relu(1 + [-0.5, 2, -3, 0.25]) = [0.5, 3, 0, 1.25]
    assert d_real.item() == pytest.approx(4.5 / 4)
    assert d_fake.item() == pytest.approx(4.75 / 4)
    assert g.item() == pytest.approx(1.25 / 4)  # -mean(fake) = -(-1.25 / 4)
    assert logs_r["logits_real"].item() == pytest.approx(0.0)
    assert logs_f["logits_fake"].item() == pytest.approx(-1.25 / 4)
    assert logs_g["logits_gen"].item() == pytest.approx(-1.25 / 4)


def test_nonsaturating_exact_values():
    loss = projected_gan.create("losses", "nonsaturating")
    d_real, _ = loss.d_loss_real(_t(REAL))
    d_fake, _ = loss.d_loss_fake(_t(FAKE))
    g, _ = loss.g_loss(_t(FAKE))
    # -log(sigmoid(r)) = log(1 + exp(-r)); -log(1 - sigmoid(f)) = log(1 + exp(f))
    assert d_real.item() == pytest.approx(_mean([_softplus(-v) for v in _flat(REAL)]), rel=1e-6)
    assert d_fake.item() == pytest.approx(_mean([_softplus(v) for v in _flat(FAKE)]), rel=1e-6)
    assert g.item() == pytest.approx(_mean([_softplus(-v) for v in _flat(FAKE)]), rel=1e-6)


def test_lsgan_exact_values():
    loss = projected_gan.create("losses", "lsgan")
    d_real, _ = loss.d_loss_real(_t(REAL))
    d_fake, _ = loss.d_loss_fake(_t(FAKE))
    g, _ = loss.g_loss(_t(FAKE))
    # (r - 1)^2 = [0.25, 9, 0.25, 1]; f^2 = [0.25, 4, 9, 0.0625]; (f - 1)^2 = [2.25, 1, 16, 0.5625]
    assert d_real.item() == pytest.approx(0.5 * 10.5 / 4)
    assert d_fake.item() == pytest.approx(0.5 * 13.3125 / 4)
    assert g.item() == pytest.approx(0.5 * 19.8125 / 4)


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_d_loss_is_sum_of_halves_and_logs_are_detached_scalars(name):
    loss = projected_gan.create("losses", name)
    real = _t(REAL).requires_grad_(True)
    fake = _t(FAKE).requires_grad_(True)
    total, logs = loss.d_loss(real, fake)
    r, _ = loss.d_loss_real(real)
    f, _ = loss.d_loss_fake(fake)
    assert total.item() == pytest.approx((r + f).item())
    assert total.dim() == 0 and total.dtype == torch.float32 and total.requires_grad
    assert set(logs) == {"d_loss", "d_real", "d_fake", "logits_real", "logits_fake"}
    g, g_logs = loss.g_loss(fake)
    assert set(g_logs) == {"g_loss", "logits_gen"}
    for value in [*logs.values(), *g_logs.values()]:
        assert isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad
    assert logs["d_loss"].item() == pytest.approx(total.item())
    assert g_logs["g_loss"].item() == pytest.approx(g.item())


def test_hinge_gradient_is_minus_one_over_n_where_active():
    real = _t(REAL).requires_grad_(True)
    loss, _ = HingeLoss().d_loss_real(real)
    loss.backward()
    expected = torch.tensor([[-0.25, -0.25], [0.0, -0.25]])  # active where 1 - r > 0
    torch.testing.assert_close(real.grad, expected)


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_bf16_logits_are_computed_in_float32(name):
    loss = projected_gan.create("losses", name)
    fake16 = _t(FAKE).to(torch.bfloat16)
    g16, _ = loss.g_loss(fake16)
    g32, _ = loss.g_loss(fake16.float())
    assert g16.dtype == torch.float32
    assert g16.item() == g32.item()


def test_nonsaturating_is_stable_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4], [3e38, -3e38]], requires_grad=True)
    loss = NonSaturatingLoss()
    values = [loss.d_loss_real(logits)[0], loss.d_loss_fake(logits)[0], loss.g_loss(logits)[0]]
    for v in values:
        assert torch.isfinite(v)
    sum(values).backward()
    assert torch.isfinite(logits.grad).all()
    # softplus(-1e4) == 0 exactly, softplus(1e4) == 1e4.
    small = torch.tensor([[1e4, 1e4]])
    assert loss.d_loss_real(small)[0].item() == 0.0
    assert loss.d_loss_fake(small)[0].item() == pytest.approx(1e4)


def test_registry_entries_and_alias():
    assert isinstance(projected_gan.create("losses", "logistic"), NonSaturatingLoss)
    assert isinstance(projected_gan.create("losses", "lsgan"), LSGANLoss)
    assert "hinge" in projected_gan.LOSSES.describe("hinge").lower()


@pytest.mark.parametrize(
    ("bad", "error"),
    [([[0.5]], TypeError), (torch.tensor([[1, 2]]), TypeError), (torch.tensor(0.5), ValueError)],
)
def test_bad_logits_name_the_argument(bad, error):
    with pytest.raises(error, match="real_logits"):
        HingeLoss().d_loss_real(bad)


# ------------------------------------------------------------------------------------- RpGAN
def test_rpgan_exact_values_and_pairing():
    loss = projected_gan.create("losses", "rpgan")
    assert loss.paired and projected_gan.create("losses", "relativistic").paired
    d, logs = loss.d_loss(_t(REAL), _t(FAKE))
    g, g_logs = loss.g_loss(_t(FAKE), _t(REAL))
    # D: softplus(fake - real) per pair; G: softplus(real - fake)
    pairs = list(zip(_flat(REAL), _flat(FAKE)))
    assert d.item() == pytest.approx(_mean([_softplus(f - r) for r, f in pairs]), rel=1e-6)
    assert g.item() == pytest.approx(_mean([_softplus(r - f) for r, f in pairs]), rel=1e-6)
    assert logs["logits_real"].item() == pytest.approx(0.0)
    assert g_logs["logits_gen"].item() == pytest.approx(-1.25 / 4)
    # Pairing, not a comparison with the mean: swapping two fakes changes the loss.
    swapped = _t(FAKE)[[1, 0]]
    assert loss.d_loss(_t(REAL), swapped)[0].item() != pytest.approx(d.item(), rel=1e-3)


def test_rpgan_gradients_real_logits_are_constants_for_g():
    loss = projected_gan.create("losses", "rpgan")
    real = _t(REAL).requires_grad_(True)
    fake = _t(FAKE).requires_grad_(True)
    loss.g_loss(fake, real)[0].backward()
    assert real.grad is None
    # d/df mean(softplus(r - f)) = -sigmoid(r - f) / n
    expect = [-1 / (1 + math.exp(-(r - f))) / 4 for r, f in zip(_flat(REAL), _flat(FAKE))]
    assert fake.grad.flatten().tolist() == pytest.approx(expect, rel=1e-5)


def test_rpgan_refuses_separate_terms_and_unpaired_shapes():
    loss = projected_gan.create("losses", "rpgan")
    with pytest.raises(TypeError, match="d_loss"):
        loss.d_loss_real(_t(REAL))
    with pytest.raises(TypeError, match="d_loss"):
        loss.d_loss_fake(_t(FAKE))
    with pytest.raises(ValueError, match="one shape"):
        loss.d_loss(_t(REAL), _t(FAKE)[:1])
    with pytest.raises(ValueError, match="real_logits"):
        loss.g_loss(_t(FAKE))
    assert "Huang et al. 2024" in projected_gan.LOSSES.describe("rpgan")


# ------------------------------------------------------------------------------- R1 and R2
def _linear_d(weight: torch.Tensor):
    return lambda x: (x * weight).flatten(1).sum(1, keepdim=True)


def test_penalty_linear_discriminator_exact():
    w = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 3, 4, 4).requires_grad_(True)
    value = gradient_penalty(x, _linear_d(w)(x), 3.0)
    # grad_x sum(D(x)) = w for every sample, so the penalty is gamma / 2 * ||w||^2.
    assert value.item() == pytest.approx(1.5 * w.square().sum().item(), rel=1e-5)
    pen = GradientPenalty(r1_gamma=3.0, r2_gamma=0.5, interval=4)
    assert pen.lazy(x, _linear_d(w)(x), "r1").item() == pytest.approx(4 * value.item(), rel=1e-6)
    r2 = pen.lazy(x, _linear_d(w)(x), "r2").item()
    assert r2 == pytest.approx(4 * 0.25 * w.square().sum().item(), rel=1e-5)


def test_penalty_quadratic_discriminator_and_second_order_gradient():
    x = torch.randn(4, 2, 3, 3).requires_grad_(True)
    scale = torch.tensor(0.7, requires_grad=True)
    logits = scale * x.square().flatten(1).sum(1, keepdim=True)  # grad = 2 * scale * x
    value = gradient_penalty(x, logits, 10.0)
    per_sample = (2 * 0.7 * x.detach()).square().flatten(1).sum(1)
    assert value.item() == pytest.approx(5.0 * per_sample.mean().item(), rel=1e-5)
    value.backward()  # create_graph=True: the penalty trains D's parameters
    # d/dscale of 5 * mean(4 scale^2 ||x||^2) = 2 * value / scale
    assert scale.grad.item() == pytest.approx(2 * value.item() / 0.7, rel=1e-5)


def test_penalty_schedule():
    pen = projected_gan.create("losses", "gradient_penalty", r1_gamma=1.0, r2_gamma=0, interval=4)
    assert [s for s in range(10) if any(pen.should_apply(s))] == [0, 4, 8]
    assert pen.should_apply(4) == (True, False)
    assert GradientPenalty(r1_gamma=0.0, r2_gamma=2.0, interval=1).should_apply(3) == (False, True)
    assert not any(any(GradientPenalty(0.0, 0.0).should_apply(s)) for s in range(20))
    assert pen.mb_ratio == pytest.approx(4 / 5)
    card = projected_gan.LOSSES.describe("gradient_penalty")
    assert "r1_gamma = 10.0" in card and "r2_gamma = 0.0" in card and "Huang et al." in card


def test_penalty_errors():
    with pytest.raises(ValueError, match="r1_gamma"):
        GradientPenalty(r1_gamma=-1.0)
    with pytest.raises(ValueError, match="r2_gamma"):
        GradientPenalty(r2_gamma=float("inf"))
    with pytest.raises(ValueError, match="interval"):
        GradientPenalty(interval=0)
    x = torch.randn(2, 3, 4, 4)
    w = torch.ones(3, 4, 4, requires_grad=True)
    with pytest.raises(ValueError, match="requires_grad"):
        gradient_penalty(x, _linear_d(w)(x), 1.0)
    unused = torch.randn(2, 3, 4, 4, requires_grad=True)
    with pytest.raises(ValueError, match="do not depend"):
        gradient_penalty(unused, _linear_d(w)(x), 1.0)
    with pytest.raises(ValueError, match=r"'r1' \(reals\) or 'r2'"):
        GradientPenalty().lazy(unused, _linear_d(w)(unused), "r3")
