"""Decoding: any image file -> a square uint8 array ``(C, R, R)``, alone or a window at a time.

Every image is converted to RGB (or luma), EXIF-rotated, centre-cropped to a square and resized
with LANCZOS, the same way whichever storage (memory, the mapped cache, streaming) asks for it.
:func:`iter_decoded` decodes a source's members in sorted order with a thread pool (PIL releases
the GIL while decoding and resizing), one bounded window at a time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps

from projected_gan.data.files import DataError, Source

__all__ = [
    "Decoded",
    "decode_all",
    "decode_into",
    "decode_member",
    "iter_decoded",
    "prepare_image",
    "progress_bar",
    "unreadable_message",
    "window_size",
]

WINDOW_BYTES = 256 * 2**20  # decoded bytes a window may hold: bounds a build's peak memory


def prepare_image(image: Image.Image, resolution: int, channels: int = 3) -> np.ndarray:
    """Any PIL image -> uint8 ``(channels, resolution, resolution)``: RGB, centre crop, resize.

    Grayscale, palette, CMYK and 16-bit images are converted (16-bit is scaled by 1/257, not
    clipped); transparent pixels are composited on black; EXIF rotation is applied. The
    centred square crop is resized with LANCZOS (antialiased); smaller images are upscaled.
    ``channels=1`` gives ITU-R 601 luma.
    """
    image = _to_rgb(ImageOps.exif_transpose(image))
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.resize(
        (resolution, resolution),
        Image.Resampling.LANCZOS,
        box=(left, top, left + side, top + side),
        reducing_gap=3.0,  # box-reduce first on big downscales: far faster, same look
    )
    if channels == 1:
        return np.asarray(image.convert("L"))[None].copy()
    return np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        # 16/32-bit grayscale: PIL's own convert() clips at 255, so rescale by hand.
        a = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _decode(fp: str | BinaryIO, resolution: int, channels: int) -> tuple[np.ndarray, bool]:
    """The prepared image, and whether it was smaller than ``resolution`` (upscaled)."""
    with Image.open(fp) as image:
        if image.format == "JPEG":  # libjpeg decodes at 1/2, 1/4, 1/8 scale almost for free
            image.draft(None, (2 * resolution, 2 * resolution))
        upscaled = min(image.size) < resolution
        image.load()
        return prepare_image(image, resolution, channels), upscaled


def decode_member(
    source: Source, name: str, resolution: int, channels: int
) -> tuple[np.ndarray, bool] | str:
    """``(image (C, R, R) uint8, upscaled)`` of member ``name``, or why it is unreadable."""
    try:
        return _decode(source.open(name), resolution, channels)
    except Exception as e:  # whatever the decoder raises means "unreadable", not a crash
        return f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------
# Decoding all members


@dataclass
class Decoded:
    """What decoding gives: ``images`` uint8 ``(N, C, R, R)`` and its bookkeeping."""

    images: np.ndarray
    names: list[str]  # member name of each image
    skipped: list[tuple[str, str]]  # (member name, why) of unreadable files
    upscaled: int  # how many images were smaller than the resolution


def unreadable_message(name: str, why: str, where: Path) -> str:
    return f"cannot read {name} in {where}: {why} (strict=True; strict=False skips such files)"


def window_size(workers: int, resolution: int, channels: int) -> int:
    """Files per decoding window: 32 per thread, at most :data:`WINDOW_BYTES` of images."""
    return max(workers, min(32 * workers, WINDOW_BYTES // (channels * resolution * resolution)))


def iter_decoded(
    source: Source,
    resolution: int,
    channels: int = 3,
    *,
    workers: int,
    strict: bool = False,
    max_images: int | None = None,
    window: int | None = None,
    progress: Any = None,
) -> Iterator[Decoded]:
    """Decode the members in sorted order, ``window`` files at a time (bounded memory).

    Yields one :class:`Decoded` per window (its readable images, the unreadable files it met,
    its upscaled count), stopping after ``max_images`` readable images. Unreadable files are
    skipped and listed; with ``strict`` the first one raises :class:`DataError` naming it.
    ``progress`` (a tqdm bar, optional) is advanced by the files of each window.
    """
    members = source.members
    window = window or window_size(workers, resolution, channels)
    left = len(members) if max_images is None else max_images

    def work(name: str) -> tuple[np.ndarray, bool] | str:
        return decode_member(source, name, resolution, channels)

    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        for start in range(0, len(members), window):
            chunk = [m.name for m in members[start : start + window]]
            part = Decoded(np.empty((0, channels, resolution, resolution), np.uint8), [], [], 0)
            kept: list[np.ndarray] = []
            for name, result in zip(chunk, pool.map(work, chunk)):
                if isinstance(result, str):
                    if strict:
                        raise DataError(unreadable_message(name, result, source.location))
                    part.skipped.append((name, result))
                elif len(kept) < left:
                    kept.append(result[0])
                    part.upscaled += result[1]
                    part.names.append(name)
            if kept:
                part.images = np.stack(kept)
            left -= len(kept)
            if progress is not None:
                progress.update(len(chunk))
            yield part
            if left <= 0:
                return


def decode_into(
    source: Source,
    resolution: int,
    channels: int,
    write: Callable[[int, np.ndarray], None],
    *,
    workers: int,
    strict: bool,
    max_images: int | None,
    desc: str = "decoding images",
    progress: bool = False,
) -> Decoded:
    """Decode window by window, handing each window's images to ``write(first_index, images)``
    (then dropping them); returns the bookkeeping (its ``images`` empty). A progress bar on a
    terminal for 2,000+ files, or whenever ``progress``."""
    done = Decoded(np.empty((0, channels, resolution, resolution), np.uint8), [], [], 0)
    with progress_bar(len(source.members), desc, force=progress) as bar:
        for part in iter_decoded(
            source,
            resolution,
            channels,
            workers=workers,
            strict=strict,
            max_images=max_images,
            progress=bar,
        ):
            if part.names:
                write(len(done.names), part.images)
            done.names += part.names
            done.skipped += part.skipped
            done.upscaled += part.upscaled
    return done


def decode_all(
    source: Source,
    resolution: int,
    channels: int,
    *,
    workers: int,
    strict: bool,
    max_images: int | None,
) -> Decoded:
    """All of :func:`iter_decoded` in one uint8 array ``(N, C, R, R)`` in memory."""
    members = source.members
    limit = len(members) if max_images is None else min(max_images, len(members))
    out = np.empty((limit, channels, resolution, resolution), dtype=np.uint8)

    def write(first: int, images: np.ndarray) -> None:
        out[first : first + len(images)] = images

    done = decode_into(
        source,
        resolution,
        channels,
        write,
        workers=workers,
        strict=strict,
        max_images=max_images,
    )
    done.images = out[: len(done.names)]
    return done


def progress_bar(total: int, desc: str, *, force: bool = False) -> Any:
    """A tqdm bar on stderr for ``total`` files when it is a terminal (and there are at least
    2,000 files, unless ``force``); else a no-op with the same ``update``/context protocol."""
    from tqdm import tqdm

    enabled = sys.stderr.isatty() and (force or total >= 2000)
    return tqdm(total=total, desc=desc, unit="img", leave=force, disable=not enabled)
