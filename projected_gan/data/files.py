"""Image sources: list a folder or zip of images in sorted order, fingerprint it, open members.

The file-level base of :mod:`projected_gan.data` (numpy-free). A *source* lists its image members
in sorted order and opens them by name, from any thread and any process (a zip handle is never
shared across threads or forked processes). Decoding is :mod:`projected_gan.data.decode`, the
decoded cache :mod:`projected_gan.data.store`.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from projected_gan.cache import CACHE_ENV, cache_dir
from projected_gan.errors import InputError

__all__ = [
    "ARRAY_EXTENSIONS",
    "CACHE_ENV",
    "IMAGE_EXTENSIONS",
    "DataError",
    "DataWarning",
    "FolderSource",
    "Member",
    "Source",
    "ZipSource",
    "default_cache_dir",
    "fingerprint",
    "open_source",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# uint8 arrays (H, W) or (H, W, C): any channel count, e.g. RGB + depth or multi-spectral bands
ARRAY_EXTENSIONS = (".npy",)


class DataError(InputError):
    """A user-facing problem with the training data (bad path, no images, too few readable).

    ``field`` names the :class:`~projected_gan.data.spec.DataSpec` field (or argument) at
    fault: ``"path"``, ``"conditional"``, ``"min_images"``, ...
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
    return name.lower().endswith(IMAGE_EXTENSIONS + ARRAY_EXTENSIONS)


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

    def read_extra(self, name: str) -> bytes | None:
        """The bytes of a non-image file ``name`` (e.g. ``dataset.json``), or None if absent."""
        try:
            with open(os.path.join(self.location, name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise DataError(f"cannot read {name} in {self.location}: {e}") from e

    def close(self) -> None:
        pass


class ZipSource:
    """Image members of a zip archive (any compression).

    Each thread of each process reads through its own handle: a handle shared across threads,
    or inherited by a forked ``DataLoader`` worker, would share one file offset.
    """

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
            # (The cheap test first: most names have no hidden part; a zip may list millions.)
            maybe_hidden = name.startswith(".") or "/." in name or "__MACOSX" in name
            if info.is_dir() or (maybe_hidden and any(map(_hidden, name.split("/")))):
                continue
            self._names[name] = info.filename
            if _is_image_name(name):
                members.append(Member(name, (info.file_size, info.CRC)))
        self.members = sorted(members, key=lambda m: m.name)
        self._reset()

    def _reset(self) -> None:
        self._local = threading.local()
        self._opened: list[zipfile.ZipFile] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __getstate__(self) -> dict:  # picklable for spawned workers: handles are per process
        state = self.__dict__.copy()
        for key in ("_local", "_opened", "_lock", "_pid"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def _handle(self) -> zipfile.ZipFile:
        if self._pid != os.getpid():  # a forked child: never touch the parent's handles
            self._reset()
        zf = getattr(self._local, "zf", None)
        if zf is None:
            zf = self._local.zf = zipfile.ZipFile(self.location)
            with self._lock:
                self._opened.append(zf)
        return zf

    def open(self, name: str) -> BinaryIO:
        return io.BytesIO(self._handle().read(self._names[name]))

    def read_extra(self, name: str) -> bytes | None:
        """The bytes of a non-image member ``name`` (e.g. ``dataset.json``), or None if absent."""
        if name not in self._names:
            return None
        try:
            return self._handle().read(self._names[name])
        except (zipfile.BadZipFile, OSError, RuntimeError) as e:
            raise DataError(f"cannot read {name} in {self.location}: {e}") from e

    def close(self) -> None:
        if self._pid == os.getpid():
            for zf in self._opened:
                zf.close()
        self._reset()


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
            f"expected image files ({', '.join(IMAGE_EXTENSIONS + ARRAY_EXTENSIONS)}), "
            f"optionally in class sub-folders"
        )
    return source


def fingerprint(source: Source) -> str:
    """sha256 over the sorted (name, size, mtime or CRC) of the members: cheap, no decoding."""
    h = hashlib.sha256(source.kind.encode())
    for m in source.members:
        h.update(f"\0{m.name}\0{m.stamp[0]}\0{m.stamp[1]}".encode())
    return h.hexdigest()
