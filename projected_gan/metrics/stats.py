"""Streaming feature statistics: running mean/covariance in float64, plus capped raw features.

Generative-model metrics need, per image set, either the first two moments of a feature
distribution (Frechet distances) or a sample of the features themselves (KID). Both are
accumulated batch by batch on the extraction device, so 50k images never sit in memory.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["FeatureStats"]


class FeatureStats:
    """Running sum and sum of outer products of ``(B, D)`` features, in float64.

    The sums are taken around a fixed ``shift`` (the mean of the first batch): covariance is
    shift-invariant, and centring near the mean avoids the cancellation of
    ``E[xx^T] - E[x]E[x]^T`` when features have a large mean compared to their spread.

    Args:
        max_items: how many raw feature rows to keep as well (in arrival order), for metrics
            such as KID that need samples and not moments. ``0`` keeps none. Memory: the kept
            rows stay on the device they arrive on as float32, ``max_items * D * 4`` bytes
            (50k x 2048 Inception features = 410 MB; 50k x 496 pooled EfficientNet features =
            99 MB). The moments take ``D * D * 8`` bytes (2048: 34 MB) whatever the count.
    """

    def __init__(self, max_items: int = 0) -> None:
        if not isinstance(max_items, int) or max_items < 0:
            raise ValueError(f"max_items must be an int >= 0, got {max_items!r}")
        self.max_items = max_items
        self.num_items = 0
        self._shift: torch.Tensor | None = None  # (D,) float64
        self._sum: torch.Tensor | None = None  # (D,) float64, sum of (x - shift)
        self._outer: torch.Tensor | None = None  # (D, D) float64, sum of (x - shift)(x - shift)^T
        self._kept: list[torch.Tensor] = []
        self._num_kept = 0

    @property
    def dim(self) -> int | None:
        """Feature dimension D (``None`` before the first batch)."""
        return None if self._shift is None else int(self._shift.shape[0])

    def append(self, features: torch.Tensor) -> None:
        """Add a batch of features ``(B, D)`` (any float dtype, any device)."""
        if not isinstance(features, torch.Tensor) or features.ndim != 2:
            got = tuple(features.shape) if hasattr(features, "shape") else type(features).__name__
            raise ValueError(f"features must be a (B, D) tensor, got {got}")
        if features.shape[0] == 0:
            return
        x = features.detach().to(torch.float64)
        if self._shift is None:
            self._shift = x.mean(dim=0)
            self._sum = torch.zeros_like(self._shift)
            self._outer = x.new_zeros(x.shape[1], x.shape[1])
        elif x.shape[1] != self._shift.shape[0]:
            raise ValueError(
                f"features have D={x.shape[1]} but earlier batches had D={self._shift.shape[0]}"
            )
        x = x.to(self._shift.device) - self._shift
        self._sum += x.sum(dim=0)
        self._outer.addmm_(x.T, x)
        self.num_items += x.shape[0]
        room = self.max_items - self._num_kept
        if room > 0:
            kept = features.detach()[:room].to(torch.float32)
            self._kept.append(kept)
            self._num_kept += kept.shape[0]

    def _require(self, at_least: int) -> None:
        if self.num_items < at_least:
            raise ValueError(
                f"FeatureStats holds {self.num_items} feature rows; at least {at_least} needed"
            )

    def mean(self) -> torch.Tensor:
        """Mean feature ``(D,)``, float64, on the accumulation device."""
        self._require(1)
        return self._shift + self._sum / self.num_items

    def cov(self) -> torch.Tensor:
        """Unbiased covariance ``(D, D)`` (divides by N - 1, like ``np.cov``), float64."""
        self._require(2)
        n = self.num_items
        centred = self._outer - torch.outer(self._sum, self._sum) / n
        return centred / (n - 1)

    def features(self) -> torch.Tensor:
        """The kept raw features ``(min(N, max_items), D)``, float32, on their device."""
        if self._num_kept == 0:
            raise ValueError(
                "no raw features were kept (max_items=0 or nothing appended); "
                "build FeatureStats(max_items=...) for metrics that need samples, such as KID"
            )
        if len(self._kept) > 1:  # concatenate once, not on every call
            self._kept = [torch.cat(self._kept)]
        return self._kept[0]

    # ------------------------------------------------------------------ serialisation
    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (for ``np.savez``; no pickle needed to read them back)."""
        self._require(1)
        state = {
            "num_items": np.asarray(self.num_items, dtype=np.int64),
            "max_items": np.asarray(self.max_items, dtype=np.int64),
            "shift": self._shift.cpu().numpy(),
            "sum": self._sum.cpu().numpy(),
            "outer": self._outer.cpu().numpy(),
        }
        if self._num_kept:
            state["features"] = self.features().cpu().numpy()
        return state

    @classmethod
    def from_state_dict(
        cls, state: dict[str, np.ndarray], device: torch.device | str = "cpu"
    ) -> FeatureStats:
        """Inverse of :meth:`state_dict`; tensors are placed on ``device``."""
        stats = cls(max_items=int(state["max_items"]))
        stats.num_items = int(state["num_items"])
        stats._shift = torch.as_tensor(state["shift"], dtype=torch.float64, device=device)
        stats._sum = torch.as_tensor(state["sum"], dtype=torch.float64, device=device)
        stats._outer = torch.as_tensor(state["outer"], dtype=torch.float64, device=device)
        if "features" in state:
            kept = torch.as_tensor(state["features"], dtype=torch.float32, device=device)
            stats._kept, stats._num_kept = [kept], kept.shape[0]
        return stats

    def __repr__(self) -> str:
        return (
            f"FeatureStats(num_items={self.num_items}, dim={self.dim}, "
            f"kept={self._num_kept}/{self.max_items})"
        )
