"""Crash-safe file writes: temp file in the same folder, fsync, rename, fsync the folder.

A reader sees either the old file or the complete new one, never a torn write, even after
``kill -9`` or a power cut in the middle of a save. What such a kill leaves behind is the temp
file (``.<name>.<token>.tmp``); :func:`remove_partial_writes` deletes those, and only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "TEMP_NAME_RE",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "remove_partial_writes",
    "temp_name",
]

# The one definition of a temp file's name, used by the writer and by the cleaner alike:
# ".<target name>.<token>.tmp". The token alphabet and length are those of tempfile.mkstemp, which
# earlier versions used, so the cleaner also recognises files that those versions left behind.
_TEMP_PREFIX = "."
_TEMP_SUFFIX = ".tmp"
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TOKEN_LEN = 8
TEMP_NAME_RE = re.compile(
    rf"^{re.escape(_TEMP_PREFIX)}(?P<target>.+)\."
    rf"(?P<token>[{_TOKEN_ALPHABET}]{{{_TOKEN_LEN}}}){re.escape(_TEMP_SUFFIX)}$"
)
# Create only (O_EXCL), never follow a planted link, binary on Windows.
_OPEN_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
)


def temp_name(target: str, token: str) -> str:
    """The temp file name :func:`atomic_write` uses for ``target`` (a file name, no folder)."""
    return f"{_TEMP_PREFIX}{target}.{token}{_TEMP_SUFFIX}"


def _create_temp(path: Path) -> tuple[int, Path]:
    for _ in range(100):
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(_TOKEN_LEN))
        tmp = path.parent / temp_name(path.name, token)
        try:
            # Mode 0o666 minus the umask, as for a plain open(path, "w"); mkstemp's 0o600 would
            # make every sample, spec and checkpoint private whatever the user's umask.
            return os.open(tmp, _OPEN_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file next to {path}: every name was taken")


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(
    path: str | Path, before_replace: Callable[[], None] | None = None
) -> Iterator[BinaryIO]:
    """Open a temp file next to ``path`` for binary writing; on success it replaces ``path``.

    On any exception the temp file is removed and ``path`` is left as it was. The new file gets
    mode ``0o666`` minus the process umask, like any file the process creates.
    ``before_replace`` runs after the data is on disk and before the rename (a test hook).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, record: Any) -> None:
    """Write ``record`` to ``path`` atomically as indented JSON with a final newline."""
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def remove_partial_writes(
    folder: str | Path, *, report: Callable[[str], None] | None = None
) -> list[tuple[Path, int]]:
    """Delete the temp files an interrupted :func:`atomic_write` left in ``folder``.

    Looks in ``folder`` and its direct subfolders (a run folder's ``checkpoints/``, ``samples/``,
    ``plots/``) for names matching :data:`TEMP_NAME_RE` and nothing else; links and folders are
    never touched. Call it only where no other process is writing into ``folder`` (a run folder
    at the start of its one training process): a write in progress has such a name too.
    Returns ``(path, size in bytes)`` of each file removed; ``report`` gets one line about them
    (not called when there were none).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    dirs = [folder, *sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())]
    removed = []
    for d in dirs:
        for p in sorted(d.iterdir()):
            if not TEMP_NAME_RE.match(p.name) or p.is_symlink() or not p.is_file():
                continue
            try:
                size = p.stat().st_size
                p.unlink()
            except OSError:  # gone already, or not ours to delete: training goes on regardless
                continue
            removed.append((p, size))
    if removed and report is not None:
        names = [str(p.relative_to(folder)) for p, _ in removed]
        more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
        total = sum(size for _, size in removed)
        report(
            f"removed {len(removed)} partial file(s) ({total / 1e6:.1f} MB) that an interrupted "
            f"write left in {folder}: {', '.join(names[:3])}{more}"
        )
    return removed
