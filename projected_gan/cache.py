"""The package's one cache folder: decoded datasets, metric statistics, unpacked assets.

``$PROJECTED_GAN_CACHE``, else ``$XDG_CACHE_HOME/projected_gan`` or ``~/.cache/projected_gan``;
each kind of cached file has its sub-folder (``datasets/``, ``metrics/``, ``assets/``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir"]

CACHE_ENV = "PROJECTED_GAN_CACHE"


def cache_dir(part: str | None = None) -> Path:
    """The cache root, or its sub-folder ``part`` (not created here)."""
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(base) / "projected_gan"
    return root / part if part else root
