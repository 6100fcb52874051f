import torch
from torch import nn

from projected_gan.spectral_norm import spectral_norm


def test_normalised_weight_has_unit_spectral_norm():
    torch.manual_seed(0)
    for module in (nn.Conv2d(8, 16, 3), nn.ConvTranspose2d(8, 16, 4), nn.Linear(10, 7)):
        spectral_norm(module)
        module.train()
        for _ in range(30):  # one power-iteration step per training forward
            w = module.weight
        dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
        mat = w.detach().movedim(dim, 0).reshape(w.shape[dim], -1)
        torch.testing.assert_close(
            torch.linalg.matrix_norm(mat, ord=2), torch.tensor(1.0), atol=1e-3, rtol=0
        )


def test_sigma_is_fp32_under_bf16_autocast_and_state_is_saved():
    torch.manual_seed(0)
    conv = spectral_norm(nn.Conv2d(64, 64, 3)).train()
    with torch.no_grad():
        ref = conv.weight.clone()
    conv.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = conv.weight
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, conv.weight, atol=0, rtol=0)  # autocast changes nothing
    state = conv.state_dict()
    assert {"parametrizations.weight.0._u", "parametrizations.weight.0._v"} <= set(state)
    other = spectral_norm(nn.Conv2d(64, 64, 3))
    other.load_state_dict(state)
    other.eval()
    torch.testing.assert_close(other.weight, conv.weight)
    assert ref.shape == w.shape


def test_gradient_flows_to_the_original_weight():
    conv = spectral_norm(nn.Conv2d(4, 4, 3))
    conv(torch.randn(2, 4, 8, 8)).sum().backward()
    grad = conv.parametrizations.weight.original.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
