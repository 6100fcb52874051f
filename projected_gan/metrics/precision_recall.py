"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019) and the ``pr`` metric.

Each set's manifold is the union of balls around its samples, the radius of a ball being the
distance to the sample's k-th nearest neighbour in the same set. *Precision* is the fraction of
generated samples inside the real manifold (fidelity), *recall* the fraction of real samples
inside the generated manifold (coverage). A point on a ball's boundary counts as inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from projected_gan.metrics.features import INCEPTION, FeatureNetworkMetric
from projected_gan.metrics.stats import FeatureStats
from projected_gan.registry import METRICS

__all__ = ["PrecisionRecall", "precision_recall"]

_BLOCK_ELEMENTS = 1 << 24  # distances per block: 128 MB of float64 whatever the set sizes


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(n, D)``, ``(m, D)`` -> ``(n, m)`` squared Euclidean distances (clamped at 0)."""
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2 * (a @ b.T)
    return d.clamp_min_(0)


def _radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Squared distance of each row of ``x`` to its k-th nearest other row, ``(N,)``."""
    rows = max(1, _BLOCK_ELEMENTS // x.shape[0])
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], rows):  # row blocks: memory O(rows * N)
        d = _squared_distances(x[start : start + rows], x)
        out[start : start + rows] = d.kthvalue(k + 1, dim=1).values  # k + 1: the row itself is 0
    return out


def _inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """How many ``queries`` lie in at least one ball (``centres``, squared ``radii``)."""
    rows = max(1, _BLOCK_ELEMENTS // centres.shape[0])
    count = torch.zeros((), dtype=torch.int64, device=queries.device)
    for start in range(0, queries.shape[0], rows):
        d = _squared_distances(queries[start : start + rows], centres)
        count += (d <= radii).any(dim=1).sum()
    return count


def precision_recall(
    feats_real: np.ndarray | torch.Tensor, feats_fake: np.ndarray | torch.Tensor, k: int = 3
) -> tuple[float, float]:
    """Improved precision and recall of fakes against reals, with k-NN balls.

    Computed in float64 on the features' device, in row blocks (memory ``O(block * N)``, time
    ``O(N^2 D)``: 10k x 10k in 2048 dims takes seconds on a GPU, minutes on a CPU).

    Args:
        feats_real: ``(N_real, D)`` features of real images.
        feats_fake: ``(N_fake, D)`` features of generated images.
        k: neighbour defining each ball's radius (the paper's default: 3).

    Returns:
        ``(precision, recall)``, each in [0, 1].
    """
    x = torch.as_tensor(feats_real).detach()
    y = torch.as_tensor(feats_fake).detach()
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"features must be (N, D) with equal D, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if min(x.shape[0], y.shape[0]) <= k:
        raise ValueError(
            f"precision/recall with k={k} needs more than {k} samples per side, got "
            f"{x.shape[0]} real and {y.shape[0]} fake"
        )
    x = x.to(torch.float64)
    y = y.to(device=x.device, dtype=torch.float64)
    precision = _inside(y, x, _radii(x, k)).item() / y.shape[0]
    recall = _inside(x, y, _radii(y, k)).item() / x.shape[0]
    return precision, recall


@METRICS.register("pr", tags=("inception", "feature_network"))
@dataclass(eq=False)
class PrecisionRecall(FeatureNetworkMetric):
    """Improved precision and recall (Kynkaanniemi et al. 2019, k = 3) in the Inception space.

    Results: ``{"precision": p, "recall": r}``, fractions in [0, 1]; higher is better. The paper
    (and StyleGAN's pr50k3) measure in VGG-16 space, so these Inception-space values are not
    comparable with theirs. Keeps up to ``max_items`` raw features per side (as ``kid``); with
    N per side the cost is ``O(N^2 D)``.
    """

    results = ("precision", "recall")
    feature_network: str | nn.Module = INCEPTION
    k: int = 3
    max_items: int = 50_000

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.max_items, int) or self.max_items <= self.k:
            raise ValueError(f"max_items must be an int > k={self.k}, got {self.max_items!r}")

    def compute(self, real: FeatureStats, fake: FeatureStats, seed: int = 0) -> dict[str, float]:
        cap = self.max_items
        precision, recall = precision_recall(real.features()[:cap], fake.features()[:cap], self.k)
        return {"precision": precision, "recall": recall}
