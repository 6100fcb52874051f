"""On-disk cache of real-image feature statistics (``.npz``, no pickle, atomic writes).

An entry is keyed by everything that changes the statistics: the dataset fingerprint (content
hash), resolution, the statistic kind (moments only, or moments plus up to ``max_items`` raw
features for KID), the feature extractor's identity (network, weights hash, resize, pooling),
the mirror flag and the number of real images. The key is hashed into the file name and stored
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

__all__ = ["CACHE_ENV", "StatsCache", "default_cache_dir"]

_FORMAT = 1


def default_cache_dir() -> Path:
    """``metrics/`` in the package cache (:func:`projected_gan.cache.cache_dir`)."""
    return cache_dir("metrics")


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
        label = "-".join(str(key.get(k, "")) for k in ("kind", "extractor", "resolution"))
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
