"""Decoding: any image file -> a uint8 array ``(C, H, W)``, alone or a window at a time.

Every image is EXIF-rotated, converted to the channels asked for, fitted to ``H x W`` (crop,
pad or stretch) and resized with LANCZOS, the same way whichever storage (memory, the mapped
cache, streaming) asks for it. ``.npy`` members (uint8 ``(H, W)`` or ``(H, W, C)``, any channel
count) are fitted the same way, channel by channel (:mod:`projected_gan.data.arrays`).
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

from projected_gan.data.arrays import read_npy
from projected_gan.data.files import ARRAY_EXTENSIONS, DataError, Source
from projected_gan.data.spec import FITS, MAX_CHANNELS
from projected_gan.sizes import Size, SizeLike, as_size

__all__ = [
    "Decoded",
    "check_read_settings",
    "decode_all",
    "decode_into",
    "decode_member",
    "fit_geometry",
    "iter_decoded",
    "prepare_array",
    "prepare_image",
    "progress_bar",
    "shown_size",
    "unreadable_message",
    "window_size",
]

WINDOW_BYTES = 256 * 2**20  # decoded bytes a window may hold: bounds a build's peak memory
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}  # what an image becomes, by channel count


def prepare_image(
    image: Image.Image, size: SizeLike, channels: int = 3, fit: str = "crop"
) -> np.ndarray:
    """Any PIL image -> uint8 ``(channels, H, W)`` in [0, 255]; ``size`` is ``R`` or ``(H, W)``.

    Channels (RGB first): 1 ITU-R 601 luma; 2 luma + alpha; 3 RGB, transparent pixels
    composited on black; 4 RGBA (an image without alpha is opaque, 255). Grayscale, palette,
    CMYK and 16-bit images are converted; 16-bit values are scaled by 1/257 and rounded (the
    cache stores 8 bits), not clipped. EXIF rotation is applied. ``fit`` (see
    :func:`fit_geometry`): ``"crop"`` the largest centred box of the target's aspect, ``"pad"``
    the whole image inside ``H x W`` with black (transparent) bars, ``"stretch"`` the whole
    image to ``H x W``; resized with LANCZOS (antialiased), smaller images upscaled. More than 4
    channels come only from ``.npy`` arrays (:func:`prepare_array`).
    """
    size, fit = as_size(size, "size"), _check_fit(fit)
    _check_image_channels(channels)
    alpha = channels in (2, 4)
    image = _to_8bit(ImageOps.exif_transpose(image), "RGBA" if alpha else "RGB")
    image = _fit(image, size, fit)  # RGBA resizes premultiplied: no fringes from hidden colour
    mode = _MODES[channels]
    if image.mode != mode:  # luma after resizing RGB, as always
        image = image.convert(mode)
    a = np.asarray(image)
    return a[None].copy() if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def prepare_array(array: np.ndarray, size: SizeLike, fit: str = "crop") -> np.ndarray:
    """A uint8 array ``(h, w)`` or ``(h, w, C)`` -> uint8 ``(C, H, W)``, fitted like
    :func:`prepare_image`, each channel resized on its own (no channel is treated as alpha)."""
    size, fit = as_size(size, "size"), _check_fit(fit)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(
            f"expected a uint8 array (H, W) or (H, W, C), got {array.dtype} {array.shape}"
        )
    bands = array[:, :, None] if array.ndim == 2 else array
    out = np.empty((bands.shape[2], *size), np.uint8)
    for c in range(bands.shape[2]):
        band = Image.fromarray(np.ascontiguousarray(bands[:, :, c]), "L")
        out[c] = np.asarray(_fit(band, size, fit))
    return out


def fit_geometry(
    w: int, h: int, size: Size, fit: str
) -> tuple[tuple[int, int, int, int], tuple[int, int], tuple[int, int]]:
    """How a ``w x h`` image becomes ``size`` ``(H, W)``: the source ``box`` (left, top, right,
    bottom) that is resized to ``(width, height)`` and pasted at ``(left, top)`` of the
    ``H x W`` output (pad: the rest stays zero)."""
    H, W = size
    if fit == "stretch":
        return (0, 0, w, h), (W, H), (0, 0)
    wider = w * H >= W * h  # the image is at least as wide as the target, for its height
    if fit == "crop":  # the largest centred box of the target's aspect
        bw, bh = (max(1, round(h * W / H)), h) if wider else (w, max(1, round(w * H / W)))
        left, top = (w - bw) // 2, (h - bh) // 2
        return (left, top, left + bw, top + bh), (W, H), (0, 0)
    # pad: the whole image, as large as fits, centred
    ow, oh = (W, max(1, round(h * W / w))) if wider else (max(1, round(w * H / h)), H)
    return (0, 0, w, h), (ow, oh), ((W - ow) // 2, (H - oh) // 2)


def _upscaled(w: int, h: int, size: Size, fit: str) -> bool:
    """Whether any axis of the image is enlarged (crop, stretch: smaller than ``H x W``)."""
    (left, top, right, bottom), (ow, oh), _ = fit_geometry(w, h, size, fit)
    return ow > right - left or oh > bottom - top


def _fit(image: Image.Image, size: Size, fit: str) -> Image.Image:
    box, out, at = fit_geometry(*image.size, size, fit)
    resized = image.resize(
        out,
        Image.Resampling.LANCZOS,
        box=box,
        reducing_gap=3.0,  # box-reduce first on big downscales: far faster, same look
    )
    if out == (size[1], size[0]):
        return resized
    canvas = Image.new(resized.mode, (size[1], size[0]))  # zeros: black, alpha 0
    canvas.paste(resized, at)
    return canvas


def _check_image_channels(channels: int) -> None:
    if channels not in _MODES:
        raise ValueError(
            f"{channels} channels come only from .npy arrays (H, W, C): image files carry at "
            f"most 4 (RGBA)"
        )


def _check_fit(fit: str) -> str:
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    return fit


def _to_8bit(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode`` ("RGB": alpha composited on black, or "RGBA")."""
    source = image.mode
    if source.startswith("I") or source == "F":
        # 16/32-bit grayscale: PIL's own convert() clips at 255, so rescale by hand.
        a = np.asarray(image, dtype=np.float64)
        if source.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert(mode)
    if mode == "RGBA":
        return image if source == "RGBA" else image.convert("RGBA")
    if source in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image if source == "RGB" else image.convert("RGB")


def check_read_settings(channels: int, fit: str) -> None:
    """Check ``channels`` (1 to :data:`MAX_CHANNELS`) and ``fit`` (one of :data:`FITS`), the
    settings every reader of image files takes: :class:`DataError` naming the argument."""
    if fit not in FITS:
        raise DataError(f"fit: expected one of {', '.join(FITS)}, got {fit!r}", field="fit")
    if isinstance(channels, bool) or not (
        isinstance(channels, int) and 1 <= channels <= MAX_CHANNELS
    ):
        raise DataError(
            f"channels: expected 1 to {MAX_CHANNELS} (1 luma, 2 luma + alpha, 3 RGB, 4 RGBA, "
            f"more from .npy arrays), got {channels!r}",
            field="channels",
        )


def shown_size(image: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of ``image`` as shown, i.e. after its EXIF rotation."""
    w, h = image.size
    if image.getexif().get(0x0112) in (5, 6, 7, 8):  # shown rotated by 90 degrees
        return h, w
    return w, h


def _decode(
    fp: str | BinaryIO, name: str, size: Size, channels: int, fit: str
) -> tuple[np.ndarray, bool]:
    """The prepared image, and whether it was enlarged (smaller than ``size``)."""
    if name.lower().endswith(ARRAY_EXTENSIONS):
        array = read_npy(fp, channels)
        return prepare_array(array, size, fit), _upscaled(array.shape[1], array.shape[0], size, fit)
    _check_image_channels(channels)  # before decoding anything
    with Image.open(fp) as image:
        _check_sixteen_bit_alpha(image, channels)  # before getexif, which decodes the pixels
        upscaled = _upscaled(*shown_size(image), size, fit)
        if image.format == "JPEG":  # libjpeg decodes at 1/2, 1/4, 1/8 scale almost for free
            side = 2 * max(size)  # at least twice every side of any fit's output
            image.draft(None, (side, side))
        image.load()
        return prepare_image(image, size, channels, fit), upscaled


def _check_sixteen_bit_alpha(image: Image.Image, channels: int) -> None:
    """Refuse a 16-bit PNG with alpha when the alpha is kept (2 or 4 channels): Pillow reads
    it at 8 bits, and a fourth channel is often depth, which needs the precision. Colour and
    luma keep today's 8-bit reading (the cache stores 8 bits)."""
    rawmode = getattr(getattr(image, "png", None), "im_rawmode", "") or ""
    if channels in (2, 4) and rawmode in ("LA;16B", "RGBA;16B"):
        raise ValueError(
            f"a 16-bit {image.mode} PNG: its alpha (or depth) channel would lose precision in "
            "the 8-bit cache; convert the file to 8 bits, or give the images as uint8 .npy"
        )


def decode_member(
    source: Source, name: str, size: SizeLike, channels: int, fit: str = "crop"
) -> tuple[np.ndarray, bool] | str:
    """``(image (C, H, W) uint8, upscaled)`` of member ``name``, or why it is unreadable."""
    try:
        return _decode(source.open(name), name, as_size(size, "size"), channels, fit)
    except Exception as e:  # whatever the decoder raises means "unreadable", not a crash
        return f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------
# Decoding all members


@dataclass
class Decoded:
    """What decoding gives: ``images`` uint8 ``(N, C, H, W)`` and its bookkeeping."""

    images: np.ndarray
    names: list[str]  # member name of each image
    skipped: list[tuple[str, str]]  # (member name, why) of unreadable files
    upscaled: int  # how many images were enlarged (smaller than the size, in some axis)


def unreadable_message(name: str, why: str, where: Path) -> str:
    return f"cannot read {name} in {where}: {why} (strict=True; strict=False skips such files)"


def window_size(workers: int, size: SizeLike, channels: int) -> int:
    """Files per decoding window: 32 per thread, at most :data:`WINDOW_BYTES` of images."""
    h, w = as_size(size, "size")
    return max(workers, min(32 * workers, WINDOW_BYTES // (channels * h * w)))


def iter_decoded(
    source: Source,
    size: SizeLike,
    channels: int = 3,
    *,
    fit: str = "crop",
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
    ``progress`` (a tqdm bar, optional) is advanced by the files of each window. ``size``
    is ``R`` or ``(H, W)``; images are uint8 ``(n, channels, H, W)``, fitted by ``fit``.
    """
    size = as_size(size, "size")
    members = source.members
    window = window or window_size(workers, size, channels)
    left = len(members) if max_images is None else max_images

    def work(name: str) -> tuple[np.ndarray, bool] | str:
        return decode_member(source, name, size, channels, fit)

    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        for start in range(0, len(members), window):
            chunk = [m.name for m in members[start : start + window]]
            part = Decoded(np.empty((0, channels, *size), np.uint8), [], [], 0)
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
    size: SizeLike,
    channels: int,
    write: Callable[[int, np.ndarray], None],
    *,
    fit: str = "crop",
    workers: int,
    strict: bool,
    max_images: int | None,
    desc: str = "decoding images",
    progress: bool = False,
) -> Decoded:
    """Decode window by window, handing each window's images to ``write(first_index, images)``
    (then dropping them); returns the bookkeeping (its ``images`` empty). A progress bar on a
    terminal for 2,000+ files, or whenever ``progress``."""
    size = as_size(size, "size")
    done = Decoded(np.empty((0, channels, *size), np.uint8), [], [], 0)
    with progress_bar(len(source.members), desc, force=progress) as bar:
        for part in iter_decoded(
            source,
            size,
            channels,
            fit=fit,
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
    size: SizeLike,
    channels: int,
    *,
    fit: str = "crop",
    workers: int,
    strict: bool,
    max_images: int | None,
) -> Decoded:
    """All of :func:`iter_decoded` in one uint8 array ``(N, C, H, W)`` in memory."""
    size = as_size(size, "size")
    members = source.members
    limit = len(members) if max_images is None else min(max_images, len(members))
    out = np.empty((limit, channels, *size), dtype=np.uint8)

    def write(first: int, images: np.ndarray) -> None:
        out[first : first + len(images)] = images

    done = decode_into(
        source,
        size,
        channels,
        write,
        fit=fit,
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
