"""On-disk cache of real-image feature statistics (``.npz``, no pickle, atomic writes).

An entry is keyed by everything that changes the statistics (:func:`real_stats_key`): the
dataset fingerprint (content hash, or for a folder its names, sizes and times), the image size
``(H, W)``, channel count and fit (``crop``, ``pad`` or ``stretch``: how images of another
aspect were brought to ``H x W``, so a 64 x 96 crop and a 64 x 96 pad of one folder never share
statistics), the mirror flag and the number of real images; then the statistic kind (moments
only, or moments plus up to ``max_items`` raw features for KID) and the feature extractor's
identity (network, weights hash, resize, pooling). The key is hashed into the file name and stored
inside the file, and a file whose stored key differs is ignored, so a changed dataset or
network is never served stale statistics.

Location: ``cache_dir`` if given, else ``metrics/`` in the package cache
(``$PROJECTED_GAN_CACHE``, else ``$XDG_CACHE_HOME/projected_gan`` or ``~/.cache/projected_gan``).
Size: ``D * D * 8`` bytes of moments (496 dims: 2 MB;
Inception's 2048: 34 MB) plus ``max_items * D * 4`` bytes of features when kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from projected_gan.atomic import atomic_write
from projected_gan.cache import CACHE_ENV, cache_dir
from projected_gan.metrics.stats import FeatureStats
from projected_gan.sizes import as_size

__all__ = ["CACHE_ENV", "StatsCache", "default_cache_dir", "real_stats_key"]

_FORMAT = 1


def default_cache_dir() -> Path:
    """``metrics/`` in the package cache (:func:`projected_gan.cache.cache_dir`)."""
    return cache_dir("metrics")


def real_stats_key(
    dataset: str,
    size: tuple[int, int],
    channels: int,
    fit: str | None,
    *,
    mirror: bool,
    num_real: int,
) -> dict[str, Any]:
    """The part of a cache key that names a real image set (each metric group adds its kind of
    statistics and extractor identity).

    ``dataset`` is its fingerprint; ``size`` ``(H, W)`` and ``channels`` what the images were
    decoded to; ``fit`` how images of another aspect were fitted (``None``: not recorded, e.g.
    a dataset made from a tensor, whose fingerprint hashes the decoded bytes themselves).
    """
    h, w = as_size(size, "size")
    return {
        "dataset": dataset,
        "size": [h, w],
        "channels": int(channels),
        "fit": fit,
        "mirror": bool(mirror),
        "num_real": int(num_real),
    }


class StatsCache:
    """Real-statistics store under one folder; ``key`` is a JSON-serialisable dict."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    @staticmethod
    def _canonical(key: dict[str, Any]) -> str:
        return json.dumps({"format": _FORMAT, **key}, sort_keys=True, separators=(",", ":"))

    def path_for(self, key: dict[str, Any]) -> Path:
        """File of ``key``: a readable prefix plus 20 hex digits of the key's sha256."""
        canonical = self._canonical(key)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:20]
        size = "x".join(str(side) for side in key.get("size", ()))
        label = "-".join((str(key.get("kind", "")), size, str(key.get("extractor", ""))))
        label = re.sub(r"[^A-Za-z0-9_.]+", "_", label)[:60].strip("_")
        return self.root / f"{label}-{digest}.npz"

    def load(self, key: dict[str, Any], device: torch.device | str = "cpu") -> FeatureStats | None:
        """The stored statistics for ``key``, or ``None`` (absent, other key, or unreadable)."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != self._canonical(key):
                    return None
                state = {name: data[name] for name in data.files if name != "key"}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            warnings.warn(f"ignoring unreadable metric cache file {path}: {exc}", stacklevel=2)
            return None
        return FeatureStats.from_state_dict(state, device=device)

    def save(self, key: dict[str, Any], stats: FeatureStats) -> Path:
        """Write ``stats`` under ``key`` atomically (temp file, fsync, rename); returns the path."""
        path = self.path_for(key)
        arrays = stats.state_dict()
        with atomic_write(path) as f:
            np.savez(f, key=np.asarray(self._canonical(key)), **arrays)
        return path
