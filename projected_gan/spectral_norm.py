"""Spectral normalisation that stays in fp32 under autocast.

``W -> W / sigma(W)``, ``sigma`` estimated by power iteration (one step per training forward, the
vectors kept as buffers ``_u``/``_v`` so they are saved and resumed). torch's own parametrisation
runs its matrix-vector products through autocast, i.e. in bf16 on a GPU, which makes ``sigma``
off by up to ~1%; the estimate here is always computed from an fp32 view of the weight.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["SpectralNorm", "spectral_norm"]

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class SpectralNorm(nn.Module):
    """Parametrisation dividing a weight by its largest singular value (power iteration)."""

    def __init__(
        self, weight: torch.Tensor, dim: int = 0, n_power_iterations: int = 1, eps: float = 1e-12
    ) -> None:
        super().__init__()
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.dim = dim
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        mat = self._matrix(weight.detach().float())
        self.register_buffer("_u", F.normalize(mat.new_empty(mat.shape[0]).normal_(), dim=0))
        self.register_buffer("_v", F.normalize(mat.new_empty(mat.shape[1]).normal_(), dim=0))
        if mat.device.type != "meta":  # meta tensors (shape-only builds) hold no values
            with torch.no_grad():
                self._power_iteration(mat, 15)  # start from a good estimate, as torch does

    def _matrix(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.movedim(self.dim, 0).reshape(weight.shape[self.dim], -1)

    @torch.no_grad()
    def _power_iteration(self, mat: torch.Tensor, steps: int) -> None:
        u, v = self._u, self._v
        for _ in range(steps):
            v = F.normalize(mat.t() @ u, dim=0, eps=self.eps)
            u = F.normalize(mat @ v, dim=0, eps=self.eps)
        self._u.copy_(u)
        self._v.copy_(v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        kind = weight.device.type
        no_autocast = (
            torch.autocast(kind, enabled=False)
            if torch.amp.is_autocast_available(kind)
            else contextlib.nullcontext()  # e.g. "meta" tensors for shape checks
        )
        with no_autocast:
            mat = self._matrix(weight.float())
            if self.training:
                self._power_iteration(mat.detach(), self.n_power_iterations)
            # clone: the buffers change in place on the next training forward
            sigma = torch.dot(self._u.clone(), mat @ self._v.clone())
            return weight / sigma.to(weight.dtype)


def spectral_norm(
    module: nn.Module, name: str = "weight", n_power_iterations: int = 1
) -> nn.Module:
    """Register :class:`SpectralNorm` on ``module.<name>`` (dim 1 for transposed convs)."""
    weight = getattr(module, name)
    dim = 1 if isinstance(module, _TRANSPOSED) else 0
    parametrize.register_parametrization(
        module, name, SpectralNorm(weight, dim=dim, n_power_iterations=n_power_iterations)
    )
    return module
