"""``projected-gan data``: build a dataset's decoded cache ahead of training."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from projected_gan.data.spec import FITS, MAX_CHANNELS
from projected_gan.errors import UsageError
from projected_gan.sizes import SizeLike, as_size, size_text

__all__ = ["parse_resolution", "prepare_data"]


def parse_resolution(text: str) -> int | tuple[int, int]:
    """``"64"`` -> ``64``; ``"64x96"`` or ``"64,96"`` -> ``(64, 96)`` (height, width)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+)\s*)?", text)
    if m is None or int(m.group(1)) < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
        raise UsageError(
            f"--resolution must be one side (64, square) or height x width (64x96 or 64,96), "
            f"got {text!r}",
            field="--resolution",
        )
    h = int(m.group(1))
    return h if m.group(2) is None else (h, int(m.group(2)))


def prepare_data(
    path: str,
    *,
    resolution: SizeLike | str,
    fit: str = "crop",
    conditional: bool = False,
    channels: int | str = 3,
    max_images: int | None = None,
    cache_dir: str | None = None,
    workers: int | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Build (or find) the decoded cache of ``path`` that training with the same settings maps,
    with a progress bar, and print a summary: images, classes with counts, skipped files, the
    cache file and its size. ``resolution`` is one side, ``(H, W)`` or the command line's text
    (``"64"``, ``"64x96"``, ``"64,96"``). Returns the summary as a dict."""
    import time

    from projected_gan.data import load_image_dataset

    resolution, channels = _checked(resolution, fit, channels)
    hw = as_size(resolution)
    start = time.perf_counter()
    dataset = load_image_dataset(
        path,
        resolution,
        fit=fit,
        conditional=conditional,
        channels=channels,
        cache_dir=cache_dir,
        storage="cache",
        strict=strict,
        max_images=max_images,
        workers=workers,
        progress=True,
    )
    seconds = time.perf_counter() - start
    if dataset.cache_file is None:
        raise UsageError(
            f"could not write the dataset cache of {path} (see the warning above); give a "
            "writable --cache-dir",
            field="--cache-dir",
        )
    raw = Path(dataset.cache_file)
    size = raw.stat().st_size + raw.with_suffix(".json").stat().st_size
    counts = {}
    if dataset.labels is not None:
        per_class = dataset.labels.bincount(minlength=dataset.num_classes).tolist()
        counts = dict(zip(dataset.class_names, per_class))
    summary = {
        "path": dataset.source,
        "images": len(dataset),
        "resolution": resolution,
        "size": list(hw),
        "fit": fit,
        "channels": channels,
        "classes": counts,
        "labels_from": dataset.labels_from,
        "skipped": list(dataset.skipped),
        "upscaled": dataset.upscaled,
        "cache_file": str(raw),
        "cache_bytes": size,
        "seconds": round(seconds, 2),
        "built": dataset.cache_built,
    }
    shown = ", ".join(f"{name}: {n:,}" for name, n in list(counts.items())[:20])
    more = f", ... ({len(counts) - 20} more)" if len(counts) > 20 else ""
    skipped = ", ".join(dataset.skipped[:5]) + (" ..." if len(dataset.skipped) > 5 else "")
    print(f"data      {dataset.source}")
    fitted = "" if fit == "crop" else f" ({fit})"
    print(f"images    {len(dataset):,} at {size_text(hw)}{fitted}, {channels} channel(s)")
    if conditional:
        print(f"classes   {len(counts)} (from {dataset.labels_from}): {shown}{more}")
    print(f"skipped   {len(dataset.skipped)} unreadable file(s){': ' + skipped if skipped else ''}")
    if dataset.upscaled:
        print(f"upscaled  {dataset.upscaled} image(s) smaller than {size_text(hw)}")
    how = f"built in {seconds:.1f} s" if dataset.cache_built else "already built"
    print(f"cache     {raw} ({_size(size)}; {how})")
    return summary


def _checked(
    resolution: SizeLike | str, fit: str, channels: int | str
) -> tuple[int | tuple[int, int], int]:
    """The resolution (one side or (H, W)) and channel count; UsageError naming the flag."""
    if isinstance(resolution, str):
        resolution = parse_resolution(resolution)
    else:
        try:
            h, w = as_size(resolution, "--resolution")
        except ValueError as e:
            raise UsageError(str(e), field="--resolution") from None
        resolution = resolution if isinstance(resolution, int) else (h, w)
    if fit not in FITS:
        raise UsageError(f"--fit must be one of {', '.join(FITS)}, got {fit!r}", field="--fit")
    text = str(channels).strip()
    if isinstance(channels, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_CHANNELS:
        raise UsageError(
            f"--channels must be 1 to {MAX_CHANNELS} (1 luma, 2 luma + alpha, 3 RGB, 4 RGBA, "
            f"more from .npy arrays), got {channels!r}",
            field="--channels",
        )
    return resolution, int(text)


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes / 1e3:.1f} kB"
