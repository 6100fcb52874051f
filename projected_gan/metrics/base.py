"""What every metric provides: a feature extractor to share, and a comparison of two sets."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from projected_gan.metrics.stats import FeatureStats

__all__ = ["FeatureExtractor", "Metric", "module_fingerprint"]


class FeatureExtractor(nn.Module):
    """Frozen map from uint8 images ``(B, 3, H, W)`` in [0, 255] to features ``(B, D)`` float32.

    ``identity`` names the feature space exactly (network, weights hash, resize, pooling); it is
    part of the real-statistics cache key, so two extractors with equal identities must give
    equal features.
    """

    identity: str = ""


class Metric:
    """A metric over two image sets, computed from their :class:`FeatureStats`.

    Subclasses set ``max_items`` (raw features each side needs; 0 = moments only) and implement
    :meth:`extractor_key` (cheap, equal for metrics that can share one feature pass),
    :meth:`build_extractor` and :meth:`compute`.
    """

    max_items: int = 0

    def extractor_key(self) -> str:
        raise NotImplementedError

    def build_extractor(self) -> FeatureExtractor:
        raise NotImplementedError

    def extractor(self) -> FeatureExtractor:
        """The extractor, built on first use and kept: reuse the metric to load weights once."""
        if getattr(self, "_extractor", None) is None:
            self._extractor = self.build_extractor()
        return self._extractor

    def compute(self, real: FeatureStats, fake: FeatureStats, seed: int = 0) -> dict[str, float]:
        """Compare the statistics of reals and fakes; returns ``{result_name: value}``."""
        raise NotImplementedError


def module_fingerprint(module: nn.Module) -> str:
    """sha256 (first 16 hex digits) over the names, dtypes, shapes and bytes of a state dict.

    Distinguishes e.g. pretrained from random weights in cache keys. Cost: one pass over the
    parameters on the host (Inception-v3, 95 MB: about 0.1 s).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
