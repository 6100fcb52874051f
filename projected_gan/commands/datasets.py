"""``projected-gan data``: build a dataset's decoded cache ahead of training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from projected_gan.errors import UsageError

__all__ = ["prepare_data"]


def prepare_data(
    path: str,
    *,
    resolution: int,
    conditional: bool = False,
    channels: int = 3,
    max_images: int | None = None,
    cache_dir: str | None = None,
    workers: int | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Build (or find) the decoded cache of ``path`` that training with the same settings maps,
    with a progress bar, and print a summary: images, classes with counts, skipped files, the
    cache file and its size. Returns the summary as a dict."""
    import time

    from projected_gan.data import load_image_dataset

    if resolution < 1:
        raise UsageError(f"--resolution must be a positive integer, got {resolution}")
    start = time.perf_counter()
    dataset = load_image_dataset(
        path,
        resolution,
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
    print(f"images    {len(dataset):,} at {resolution}x{resolution}, {channels} channel(s)")
    if conditional:
        print(f"classes   {len(counts)} (from {dataset.labels_from}): {shown}{more}")
    print(f"skipped   {len(dataset.skipped)} unreadable file(s){': ' + skipped if skipped else ''}")
    if dataset.upscaled:
        print(f"upscaled  {dataset.upscaled} image(s) smaller than {resolution}px")
    how = f"built in {seconds:.1f} s" if dataset.cache_built else "already built"
    print(f"cache     {raw} ({_size(size)}; {how})")
    return summary


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes / 1e3:.1f} kB"
