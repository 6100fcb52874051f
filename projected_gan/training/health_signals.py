"""The health signals measured outside the step: G_ema's distance to G and its diversity.

Both run at a tick (rank 0), never in the step: the step's own signals (logits, r_t, gradient
norms, non-finite counts) are device accumulators read with the losses
(:mod:`~projected_gan.training.step`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from projected_gan.metrics.base import FeatureExtractor, build_metrics
from projected_gan.metrics.evaluate import RealSet
from projected_gan.metrics.features import as_uint8_rgb

__all__ = ["DiversityProbe", "ema_distance", "mean_pairwise_distance"]

DIVERSITY_SEED_OFFSET = 777_001  # the probe's latents: a stream of their own
FEATURE_CHUNK = 32  # images per extractor pass


@torch.no_grad()
def ema_distance(G: nn.Module, G_ema: nn.Module) -> float:
    """||G - G_ema|| / ||G_ema|| over all parameters (0 = identical; one host sync)."""
    ema, live = list(G_ema.parameters()), list(G.parameters())
    if not ema:
        return 0.0
    diff = torch._foreach_sub(ema, live)
    num = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(diff)))
    den = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(ema)))
    return float(num / den.clamp_min(1e-12))


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean Euclidean distance over all pairs of rows of ``features`` ``(N, D)``, N >= 2."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got {tuple(features.shape)}")
    return float(torch.pdist(features.double()).mean())


class DiversityProbe:
    """Diversity of a fixed batch of G_ema samples relative to a fixed batch of reals.

    ``measure(sample)`` = mean pairwise distance of the samples' features / the same for the
    reals, in the feature space of the run's metrics (``metrics.feature_network``: pooled
    EfficientNet-lite1 by default, ``inception`` for the FID space). 1 means as varied as the
    data; a collapsed G tends to 0.

    Args:
        extractor: uint8 ``(B, 3, H, W)`` -> ``(B, D)`` features (a metric's extractor); it
            sees the RGB view of reals and fakes of any channel count, as the metrics do.
        reals: uint8 ``(N, C, H, W)`` reals, N >= 2.
        z: ``(N, z_dim)`` fixed latents; ``c``: their labels (or None).
        device: where the extractor runs.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        reals: torch.Tensor,
        z: torch.Tensor,
        c: torch.Tensor | None,
        device: torch.device,
    ) -> None:
        self.extractor = extractor.to(device).eval()
        self.device = device
        self.z, self.c = z, c
        self.real_spread = mean_pairwise_distance(self.features(reals))

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [-1, 1]) ``(N, C, H, W)``, any channel count -> float32 ``(N, D)``,
        in chunks, of their RGB view as the metrics see it."""
        parts = [
            self.extractor(as_uint8_rgb(images[i : i + FEATURE_CHUNK]).to(self.device)).float()
            for i in range(0, len(images), FEATURE_CHUNK)
        ]
        return torch.cat(parts)

    def measure(self, sample: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]) -> float:
        """``sample(z, c)`` -> float images in [-1, 1]; returns the diversity ratio."""
        fakes = sample(self.z, self.c)
        return mean_pairwise_distance(self.features(fakes)) / max(self.real_spread, 1e-12)

    @classmethod
    def for_run(
        cls, spec: Any, dataset: Any, G: nn.Module, device: torch.device
    ) -> DiversityProbe | None:
        """The probe of a run: ``health.diversity_samples`` reals of ``dataset`` (a fixed random
        subset) and as many fixed latents; None when diversity is off or the data is unknown."""
        n = spec.health.diversity_samples
        if n < 2 or dataset is None:
            return None
        reals = RealSet(dataset, min(n, len(dataset)))
        metric = build_metrics(
            ["fd"],
            feature_network=spec.metrics.feature_network,
            weights=spec.metrics.fid_weights,
        )[0]
        gen = torch.Generator().manual_seed(spec.train.seed + DIVERSITY_SEED_OFFSET)
        z = torch.randn(reals.shape[0], G.z_dim, generator=gen).to(device)
        c_dim = int(getattr(G, "c_dim", 0) or 0)
        labels = getattr(dataset, "labels", None)
        c = None
        if c_dim and labels is not None:
            pick = torch.randint(len(labels), (len(z),), generator=gen)
            c = torch.as_tensor(labels)[pick].to(device)
        return cls(metric.build_extractor(), reals[: reals.shape[0]], z, c, device)
