"""Reading image files: list a folder or zip, fingerprint it, decode it, cache the result.

The file-level half of :func:`projected_gan.data.datasets.load_image_dataset` (numpy + PIL only).
A *source* lists its image members in sorted order; :func:`decode_all` turns them into one uint8
array ``(N, C, R, R)`` with a thread pool (PIL releases the GIL while decoding and resizing).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import threading
import warnings
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from projected_gan.atomic import atomic_write
from projected_gan.cache import CACHE_ENV, cache_dir
from projected_gan.errors import InputError

__all__ = [
    "CACHE_ENV",
    "IMAGE_EXTENSIONS",
    "DataError",
    "DataWarning",
    "Decoded",
    "FolderSource",
    "Member",
    "ZipSource",
    "cache_file",
    "decode_all",
    "default_cache_dir",
    "fingerprint",
    "iter_decoded",
    "open_source",
    "prepare_image",
    "read_cache",
    "unreadable_message",
    "write_cache",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CACHE_FORMAT = 1  # bump whenever decoding changes, so stale cache files are never reused


class DataError(InputError):
    """A user-facing problem with the training data (bad path, no images, too few readable).

    ``field`` names the argument at fault (``"path"``, ``"use_labels"``, ``"min_images"``, ...).
    """

    def __init__(self, message: str, *, field: str | None = "path") -> None:
        super().__init__(message, field=field)


class DataWarning(UserWarning):
    """Something in the data was skipped or changed (unreadable files, upscaled images)."""


def default_cache_dir() -> Path:
    """Where decoded datasets are cached: ``datasets/`` in the package cache
    (:func:`projected_gan.cache.cache_dir`)."""
    return cache_dir("datasets")


# --------------------------------------------------------------------------------------------
# One image


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


# --------------------------------------------------------------------------------------------
# Sources: a folder (recursive) or a zip with the same layout


@dataclass(frozen=True)
class Member:
    """One image file: relative posix ``name`` ("daisy/1.jpg") and a cheap change ``stamp``."""

    name: str
    stamp: tuple[int, int]  # (size, mtime_ns) in a folder, (size, CRC-32) in a zip

    @property
    def folder(self) -> str | None:
        """The first-level sub-folder (the class), or None for a file at the top level."""
        head, sep, _ = self.name.partition("/")
        return head if sep else None


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _hidden(part: str) -> bool:
    # ".DS_Store", "._img.jpg" (macOS resource forks), ".ipynb_checkpoints", "__MACOSX".
    return part.startswith(".") or part == "__MACOSX"


class FolderSource:
    """Image files under ``root``, found recursively (symlinks followed, each folder once)."""

    kind = "folder"

    def __init__(self, root: Path) -> None:
        self.location = root
        self.problems: list[tuple[str, str]] = []  # (unreadable sub-folder, why)
        self.members = self._walk()

    def _walk(self) -> list[Member]:
        members: list[Member] = []
        seen: set[tuple[int, int]] = set()  # (device, inode) of visited folders: ends loops
        stack: list[tuple[str, str]] = [("", str(self.location))]
        while stack:
            rel, folder = stack.pop()
            try:
                st = os.stat(folder)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                self.problems.append((f"{rel or '.'}/", e.strerror or str(e)))
                continue
            subfolders = []
            for entry in entries:
                if _hidden(entry.name):
                    continue
                name = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    is_dir = entry.is_dir()  # follows symlinks; the seen-set guards loops
                except OSError:
                    is_dir = False
                if is_dir:
                    subfolders.append((name, entry.path))
                elif _is_image_name(entry.name):
                    try:
                        st = entry.stat()
                        stamp = (st.st_size, st.st_mtime_ns)
                    except OSError:  # dangling symlink: kept, then skipped as unreadable
                        stamp = (-1, -1)
                    members.append(Member(name, stamp))
            stack.extend(reversed(subfolders))
        return sorted(members, key=lambda m: m.name)

    def open(self, name: str) -> str:
        return os.path.join(self.location, name)

    def close(self) -> None:
        pass


class ZipSource:
    """Image members of a zip archive (any compression), read by per-thread handles."""

    kind = "zip"

    def __init__(self, path: Path) -> None:
        self.location = path
        self.problems: list[tuple[str, str]] = []
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"data path {path} is not a readable zip file ({e})") from e
        self._names: dict[str, str] = {}  # normalised name -> name inside the archive
        members = []
        for info in infos:
            name = info.filename.replace("\\", "/")
            if info.is_dir() or any(map(_hidden, name.split("/"))) or not _is_image_name(name):
                continue
            self._names[name] = info.filename
            members.append(Member(name, (info.file_size, info.CRC)))
        self.members = sorted(members, key=lambda m: m.name)
        self._local = threading.local()  # a ZipFile handle must not be shared across threads
        self._opened: list[zipfile.ZipFile] = []
        self._lock = threading.Lock()

    def open(self, name: str) -> BinaryIO:
        zf = getattr(self._local, "zf", None)
        if zf is None:
            zf = self._local.zf = zipfile.ZipFile(self.location)
            with self._lock:
                self._opened.append(zf)
        return io.BytesIO(zf.read(self._names[name]))

    def close(self) -> None:
        for zf in self._opened:
            zf.close()
        self._opened.clear()
        self._local = threading.local()


Source = FolderSource | ZipSource


def open_source(path: Path) -> Source:
    """A folder or zip with at least one image file, else :class:`DataError` naming ``path``."""
    if not path.exists():
        raise DataError(
            f"data path {path} does not exist; expected a folder of images or a .zip of them"
        )
    if path.is_dir():
        source: Source = FolderSource(path)
    elif path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        source = ZipSource(path)
    else:
        raise DataError(f"data path {path} is a file but not a zip; expected a folder or a .zip")
    if not source.members:
        empty = source.kind == "folder" and not any(path.iterdir())
        raise DataError(
            f"data {source.kind} {path} {'is empty' if empty else 'contains no image files'}; "
            f"expected image files ({', '.join(IMAGE_EXTENSIONS)}), optionally in class "
            f"sub-folders"
        )
    return source


def fingerprint(source: Source) -> str:
    """sha256 over the sorted (name, size, mtime or CRC) of the members: cheap, no decoding."""
    h = hashlib.sha256(source.kind.encode())
    for m in source.members:
        h.update(f"\0{m.name}\0{m.stamp[0]}\0{m.stamp[1]}".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Decoding all members


@dataclass
class Decoded:
    """What decoding (or the cache) gives: ``images`` uint8 ``(N, C, R, R)`` and bookkeeping."""

    images: np.ndarray
    names: list[str]  # member name of each image
    skipped: list[tuple[str, str]]  # (member name, why) of unreadable files
    upscaled: int  # how many images were smaller than the resolution


def unreadable_message(name: str, why: str, where: Path) -> str:
    return f"cannot read {name} in {where}: {why} (strict=True; strict=False skips such files)"


def iter_decoded(
    source: Source,
    resolution: int,
    channels: int = 3,
    *,
    workers: int,
    strict: bool = False,
    max_images: int | None = None,
    window: int | None = None,
) -> Iterator[Decoded]:
    """Decode the members in sorted order, ``window`` files at a time (bounded memory).

    Yields one :class:`Decoded` per window (its readable images, the unreadable files it met,
    its upscaled count), stopping after ``max_images`` readable images. Unreadable files are
    skipped and listed; with ``strict`` the first one raises :class:`DataError` naming it.
    """
    members = source.members
    window = window or 32 * workers
    left = len(members) if max_images is None else max_images

    def work(name: str) -> tuple[np.ndarray, bool] | str:
        try:
            return _decode(source.open(name), resolution, channels)
        except Exception as e:  # whatever the decoder raises means "unreadable", not a crash
            return f"{type(e).__name__}: {e}"

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
            yield part
            if left <= 0:
                return


def decode_all(
    source: Source,
    resolution: int,
    channels: int,
    *,
    workers: int,
    strict: bool,
    max_images: int | None,
) -> Decoded:
    """All of :func:`iter_decoded` in one uint8 array ``(N, C, R, R)``."""
    members = source.members
    limit = len(members) if max_images is None else min(max_images, len(members))
    out = np.empty((limit, channels, resolution, resolution), dtype=np.uint8)
    done = Decoded(out, [], [], 0)
    progress = _progress(len(members))
    for part in iter_decoded(
        source, resolution, channels, workers=workers, strict=strict, max_images=max_images
    ):
        n = len(done.names)
        out[n : n + len(part.names)] = part.images
        done.names += part.names
        done.skipped += part.skipped
        done.upscaled += part.upscaled
        if progress is not None:
            progress.update(len(part.names) + len(part.skipped))
    if progress is not None:
        progress.close()
    done.images = out[: len(done.names)]
    return done


def _progress(total: int):  # -> tqdm | None
    if total < 2000 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="decoding images", unit="img", leave=False)


# --------------------------------------------------------------------------------------------
# The cache: one uncompressed .npz per (source fingerprint, settings), no pickles


def cache_file(folder: Path, path: Path, key: dict) -> Path:
    """``folder/datasets/<source name>-<R>px-<sha256(key)>.npz``; ``key`` holds every setting."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.resolve().stem or "data")[:40]
    return folder / "datasets" / f"{stem}-{key['resolution']}px-{digest}.npz"


def read_cache(file: Path, key: dict) -> Decoded | None:
    """The cached result, or None if absent; a torn or foreign file warns and gives None."""
    if not file.exists():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            images, names = z["images"], [str(n) for n in z["names"]]
            skipped = [(str(a), str(b)) for a, b in zip(z["skipped"], z["reasons"])]
        expected = (len(names), key["channels"], key["resolution"], key["resolution"])
        if meta.get("key") != key:
            raise ValueError("its settings do not match its name")
        if images.dtype != np.uint8 or images.shape != expected:
            raise ValueError(f"images are {images.dtype} {images.shape}, expected {expected}")
        return Decoded(images, names, skipped, int(meta["upscaled"]))
    except Exception as e:  # a torn or foreign file: rebuild it rather than fail the run
        warnings.warn(
            f"ignoring unreadable dataset cache {file} ({e}); rebuilding it",
            DataWarning,
            stacklevel=3,
        )
        return None


def write_cache(file: Path, key: dict, decoded: Decoded) -> None:
    """Atomic write (temp file + fsync + rename); a failure only warns."""
    meta = {"key": key, "upscaled": decoded.upscaled}
    try:
        with atomic_write(file) as f:
            np.savez(
                f,
                images=decoded.images,
                names=np.array(decoded.names, dtype=str),
                skipped=np.array([a for a, _ in decoded.skipped], dtype=str),
                reasons=np.array([b for _, b in decoded.skipped], dtype=str),
                meta=np.array(json.dumps(meta)),
            )
    except OSError as e:  # read-only home, full disk: training can go on without a cache
        warnings.warn(f"could not write the dataset cache {file} ({e})", DataWarning, stacklevel=3)
