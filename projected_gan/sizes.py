"""Image sizes: one side (square) or ``(height, width)``, and how they are written.

Everywhere in the package an image size is a ``(H, W)`` tuple once it leaves the user: the
spec's ``data.resolution`` and every part's ``img_resolution`` take a single side (square) or
``[height, width]``, and :func:`as_size` turns either into the tuple.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Size", "SizeLike", "as_size", "size_text"]

Size = tuple[int, int]  # (height, width) in pixels
SizeLike = int | Sequence[int]


def as_size(value: SizeLike, name: str = "resolution") -> Size:
    """``64`` -> ``(64, 64)``; ``[64, 96]`` or ``(64, 96)`` -> ``(64, 96)`` (height, width).

    Raises ValueError naming ``name`` for anything else: a bool, a float, a string, a list that
    is not two positive ints.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        side = value
        if side < 1:
            raise ValueError(f"{name} must be positive, got {value!r}")
        return (side, side)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) == 2:
        h, w = value
        if all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in (h, w)):
            return (int(h), int(w))
    raise ValueError(
        f"{name} must be one side (an int, square images) or [height, width] (two positive "
        f"ints), got {value!r}"
    )


def size_text(size: SizeLike) -> str:
    """``(64, 96)`` -> ``'64x96'`` (height x width); a square ``64`` -> ``'64x64'``."""
    h, w = as_size(size)
    return f"{h}x{w}"
