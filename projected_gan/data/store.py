"""The decoded cache: one raw uint8 file per (source fingerprint, settings), mapped, not loaded.

For a source and its settings ``key`` the cache folder holds (``<size>`` is ``R`` for square
images, ``HxW`` otherwise)::

    <name>-<size>px-<digest>.raw    the images, uint8 (N, C, H, W), C order, nothing else
    <name>-<size>px-<digest>.json   the sidecar: format, key, shape, byte size, member names,
                                    skipped files with reasons, upscaled count (no pickles)
    <name>-<size>px-<digest>.lock   an flock(2) lock file: one process builds, the others wait

A build decodes window by window straight into a temp file (so its peak memory is one window,
not ``N`` images), fsyncs it and renames it into place, then writes the sidecar the same way:
a kill at any moment leaves either no cache or a complete one, never a file that looks finished.
Later loads map the raw file copy-on-write (``np.memmap`` mode ``"c"``): opening costs the same
for 1k or 1M images, the pages come from the page cache shared by every process on the node,
and a write through the mapping (none is made) would stay private to its process, never
reaching the file. A sidecar of another format, settings that do not match, a raw file of the
wrong size or without a sidecar are never trusted: one warning, then a rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from projected_gan.atomic import TEMP_NAME_RE, atomic_write, atomic_write_json
from projected_gan.data.decode import Decoded, decode_into
from projected_gan.data.files import DataWarning, Source
from projected_gan.errors import quote
from projected_gan.safejson import read_json
from projected_gan.sizes import as_size

MAX_SIDECAR_BYTES = 256 << 20  # member names of millions of images

try:  # POSIX; elsewhere builds are not serialised (still atomic)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CACHE_FORMAT",
    "CacheFiles",
    "CacheWriteError",
    "build_cache",
    "build_lock",
    "cache_files",
    "disk_room",
    "open_cache",
]

CACHE_FORMAT = 2  # 1 was one .npz read whole; bump whenever decoding or the layout changes
_LEGACY_FORMAT = 1


class CacheWriteError(OSError):
    """The cache could not be written (read-only folder, full disk); nothing was left behind."""


@dataclass(frozen=True)
class CacheFiles:
    """The paths of one cache entry (see the module docstring)."""

    raw: Path
    meta: Path
    lock: Path
    legacy: tuple[Path, ...]  # the .npz files that version 1 wrote for the same data

    @property
    def size(self) -> int:
        """Bytes on disk of the raw file and its sidecar (0 when absent)."""
        return sum(p.stat().st_size for p in (self.raw, self.meta) if p.exists())


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def cache_files(folder: Path, path: Path, key: dict) -> CacheFiles:
    """The entry of source ``path`` with settings ``key`` (fingerprint, resolution: ``R`` or
    ``[H, W]``, channels, max_images, and fit unless it is the default crop) in ``folder``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.resolve().stem or "data")[:40]
    h, w = as_size(key["resolution"])
    tag = f"{h}px" if h == w else f"{h}x{w}px"
    base = folder / f"{stem}-{tag}-{_digest(key)}"
    legacy = tuple(
        folder / "datasets" / f"{stem}-{tag}-{_digest(old)}.npz"
        for old in (
            {"format": _LEGACY_FORMAT, **key, "use_labels": labels} for labels in (False, True)
        )
    )
    return CacheFiles(
        base.with_suffix(".raw"), base.with_suffix(".json"), base.with_suffix(".lock"), legacy
    )


# --------------------------------------------------------------------------------------------
# Reading


class _Untrusted(Exception):
    """Why a cache entry cannot be used."""


def open_cache(
    files: CacheFiles, key: dict, *, warn: bool = True, members: set[str] | None = None
) -> Decoded | None:
    """The mapped images and bookkeeping of a valid entry; None if absent or not trustworthy.

    ``images`` is a copy-on-write ``np.memmap`` uint8 ``(N, C, H, W)``. With ``warn``, an entry
    that exists but cannot be trusted (torn, stale, of an older format, cut off) gives one
    :class:`DataWarning` saying why; the caller rebuilds it.
    """
    try:
        return _open(files, key, members)
    except FileNotFoundError:
        return None
    except _Untrusted as e:
        if warn:
            warnings.warn(
                f"ignoring the dataset cache {files.raw} ({e}): not trusted, rebuilding it",
                DataWarning,
                stacklevel=3,
            )
        return None


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Untrusted(f"its sidecar's {what} are not a list of names")
    return value


def _open(files: CacheFiles, key: dict, members: set[str] | None = None) -> Decoded:
    has_raw, has_meta = files.raw.exists(), files.meta.exists()
    if not has_meta:
        if has_raw:
            raise _Untrusted("its sidecar .json is missing: a build was cut off")
        raise FileNotFoundError(files.meta)
    try:
        meta = read_json(files.meta, max_bytes=MAX_SIDECAR_BYTES)
        version = meta["format"]
        shape = tuple(int(s) for s in meta["shape"])
        names = _strings(meta["names"], "names")
        skipped = [(a, b) for a, b in (_strings(p, "skipped") for p in meta["skipped"])]
        upscaled = meta["upscaled"]
        if type(upscaled) is not int or not 0 <= upscaled <= len(names):
            raise _Untrusted(f"its sidecar counts {quote(upscaled)} upscaled images")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, OverflowError) as e:
        # JSONFileError (a ValueError): torn, not JSON, too large or nested too deep
        raise _Untrusted(f"its sidecar is torn or unreadable: {type(e).__name__}: {e}") from None
    if version != CACHE_FORMAT:
        raise _Untrusted(
            f"it is in format {quote(version)}; this version reads format {CACHE_FORMAT}"
        )
    if meta.get("key") != key:
        raise _Untrusted("its settings do not match its name")
    expected = (len(names), key["channels"], *as_size(key["resolution"]))
    if shape != expected or not names:
        raise _Untrusted(f"its shape is {shape}, its names say {expected}")
    if len(set(names)) != len(names) or (members is not None and not set(names) <= members):
        raise _Untrusted("its sidecar names images twice, or images that are not in the data")
    if not has_raw:
        raise _Untrusted("its .raw image file is missing")
    nbytes = int(np.prod(shape))
    actual = files.raw.stat().st_size
    if actual != nbytes or meta.get("bytes") != nbytes:
        raise _Untrusted(f"its .raw file holds {actual} bytes, not {nbytes}: cut off mid-write")
    images = np.memmap(files.raw, dtype=np.uint8, mode="c", shape=shape)
    return Decoded(images, names, skipped, upscaled)


# --------------------------------------------------------------------------------------------
# Building


def build_cache(
    files: CacheFiles,
    key: dict,
    source: Source,
    *,
    workers: int,
    strict: bool,
    max_images: int | None,
    progress: bool = False,
) -> Decoded:
    """Decode ``source`` into a new entry and map it; what it decoded when no image was readable.

    Hold :func:`build_lock` around it. Raises :class:`CacheWriteError` when the folder cannot
    be written (nothing is left behind), :class:`~projected_gan.data.files.DataError` from
    decoding (``strict``).
    """
    size, channels = as_size(key["resolution"]), key["channels"]
    try:
        with atomic_write(files.raw) as f:

            def write(first: int, images: np.ndarray) -> None:
                # Straight to the file: one window is all that a build holds in memory.
                f.write(memoryview(np.ascontiguousarray(images)).cast("B"))

            done = decode_into(
                source,
                size,
                channels,
                write,
                fit=key.get("fit", "crop"),
                workers=workers,
                strict=strict,
                max_images=max_images,
                desc=f"decoding into {files.raw.name}",
                progress=progress,
            )
            if not done.names:
                raise _NothingReadable
        shape = [len(done.names), channels, *size]
        meta = {
            "format": CACHE_FORMAT,
            "key": key,
            "shape": shape,
            "bytes": int(np.prod(shape)),
            "source": str(source.location),
            "names": done.names,
            "skipped": [list(s) for s in done.skipped],
            "upscaled": done.upscaled,
        }
        atomic_write_json(files.meta, meta)
    except _NothingReadable:
        return done
    except OSError as e:
        raise CacheWriteError(f"could not write the dataset cache {files.raw} ({e})") from e
    return _open(files, key)


class _NothingReadable(Exception):
    pass


@contextlib.contextmanager
def build_lock(files: CacheFiles) -> Iterator[bool]:
    """Hold ``files.lock`` exclusively (``flock``): one builder per entry, even across the nodes
    of a shared filesystem that supports locks. Yields whether the lock is held; where locks are
    unsupported (or the folder is read-only) it yields False and serialises nothing, which
    stays safe (every write is atomic), only wasteful. While held, it removes the temp files a
    killed build of this entry left behind, and the version-1 ``.npz`` files of the same data
    (with one warning: they are never read again).
    """
    fd = None
    if fcntl is not None:
        try:
            files.lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            fd = None
    held = False
    if fd is not None:
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(
                    f"projected-gan: waiting for another process to finish the dataset cache "
                    f"{files.raw}",
                    file=sys.stderr,
                    flush=True,
                )
                fcntl.flock(fd, fcntl.LOCK_EX)
            held = True
        except OSError:  # no lock support here (some network filesystems)
            held = False
    try:
        if held:
            _remove_leftovers(files)
        yield held
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _remove_leftovers(files: CacheFiles) -> None:
    targets = {files.raw.name, files.meta.name}
    with contextlib.suppress(OSError):
        for p in files.raw.parent.iterdir():
            m = TEMP_NAME_RE.match(p.name)
            if m and m.group("target") in targets and p.is_file() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.unlink()
    stale = [old for old in files.legacy if old.exists()]
    if stale:
        warnings.warn(
            f"ignoring the dataset cache {' and '.join(map(str, stale))} (written by an older "
            f"version, format {_LEGACY_FORMAT}): not trusted, removing it and rebuilding as "
            f"{files.raw}",
            DataWarning,
            stacklevel=4,
        )
        for old in stale:
            with contextlib.suppress(OSError):
                old.unlink()
        with contextlib.suppress(OSError):
            stale[0].parent.rmdir()  # the old layout's sub-folder, when nothing else is in it


def disk_room(folder: Path) -> int:
    """Free bytes on the filesystem that holds (or would hold) ``folder``."""
    probe = folder.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return 0
