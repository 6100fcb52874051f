"""What is at this path: a run folder, a checkpoint, an export folder or a network pickle.

Every command that takes trained weights (``generate``, ``interpolate``, ``eval``, ``export``,
``convert``, ``train --init`` and ``train --resume``) asks :func:`identify` and nothing else, so
they all read a path the same way. The answer comes from what is there, not from the name:

* a **run folder** holds ``checkpoints/`` or ``spec.yaml`` (what ``projected-gan train`` writes);
* an **export folder** holds ``config.json`` (what ``projected-gan export`` writes);
* a **checkpoint** is a safetensors file: an 8-byte little-endian header length that fits the
  file, then ``{``. This test comes first: a header of 1,152 bytes begins ``80 04``, which is
  also how a pickle of protocol 4 begins;
* a **network pickle** (the official code's ``.pkl``) begins with a pickle protocol 2-5 header,
  or is named ``*.pkl`` / ``*.pickle`` (then its reader says what is wrong with it).

Only the first nine bytes of a file are read; nothing is unpickled or loaded here.
"""

from __future__ import annotations

import os
from pathlib import Path

from projected_gan.errors import InputError

__all__ = [
    "CHECKPOINT",
    "EXPORT",
    "HELP",
    "KINDS",
    "NETWORK_PICKLE",
    "RUN",
    "SourceError",
    "describe_kind",
    "identify",
    "require",
]

RUN, CHECKPOINT, EXPORT, NETWORK_PICKLE = "run", "checkpoint", "export", "network_pickle"
KINDS = (RUN, CHECKPOINT, EXPORT, NETWORK_PICKLE)
_NAMES = {
    RUN: "a run folder",
    CHECKPOINT: "a checkpoint file",
    EXPORT: "an export folder",
    NETWORK_PICKLE: "a network pickle",
}
#: The command line's help for a path argument that takes trained weights (written once).
HELP = (
    "a run folder (its newest checkpoint), a checkpoint file (.safetensors), an export folder "
    "(projected-gan export), or an official Projected GAN network pickle (.pkl; nothing in it runs)"
)
PICKLE_SUFFIXES = (".pkl", ".pickle")
EXPORT_CONFIG = "config.json"  # export.folder.CONFIG_NAME (not imported: --help stays light)


class SourceError(InputError):
    """A path that is none of the kinds a command takes (or not the kind it needs)."""


def describe_kind(kind: str) -> str:
    """``"a run folder"``, ``"a checkpoint file"``, ... for messages."""
    return _NAMES[kind]


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 2 <= header_len <= size - 8 and head[8:9] == b"{"


def _is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def identify(path: str | os.PathLike, *, field: str | None = None) -> str:
    """The kind of what is at ``path``: one of :data:`KINDS`.

    Args:
        path: what the user gave.
        field: the flag or spec field that gave it, for the error.

    Raises:
        SourceError: nothing is there, or it is none of the four kinds.
    """
    p = Path(path).expanduser()
    where = f"{field} {str(path)!r}" if field else str(path)
    if not p.exists():
        raise SourceError(f"{where} does not exist; expected {HELP}", field=field)
    if p.is_dir():
        if (p / EXPORT_CONFIG).is_file():
            return EXPORT
        if (p / "checkpoints").is_dir() or (p / "spec.yaml").is_file():
            return RUN
        raise SourceError(
            f"{where} is a folder, but neither a run folder (no checkpoints/ or spec.yaml in it) "
            f"nor an export folder (no {EXPORT_CONFIG})",
            field=field,
        )
    try:
        with open(p, "rb") as f:
            head = f.read(9)
        size = p.stat().st_size
    except OSError as exc:
        raise SourceError(f"{where} cannot be read: {exc.strerror or exc}", field=field) from None
    if _is_safetensors(head, size):  # before the pickle test: see the module's docstring
        return CHECKPOINT
    if _is_pickle(head) or p.suffix.lower() in PICKLE_SUFFIXES:
        return NETWORK_PICKLE
    raise SourceError(
        f"{where} is neither a checkpoint (a safetensors file) nor a network pickle "
        f"({size} bytes starting {head[:9].hex(' ') or 'with nothing'}); expected {HELP}",
        field=field,
    )


def require(path: str | os.PathLike, kinds: tuple[str, ...], use: str, *, field=None) -> str:
    """:func:`identify`, refusing kinds that ``use`` (a command, for the message) cannot take.

    Example: ``require(p, (RUN,), "--resume")`` says "X is an export folder; --resume takes a
    run folder".
    """
    wanted = " or ".join(describe_kind(k) for k in kinds)
    if not Path(path).expanduser().exists():
        raise SourceError(f"{path} does not exist; {use} takes {wanted}", field=field or use)
    kind = identify(path, field=field)
    if kind not in kinds:
        raise SourceError(
            f"{path} is {describe_kind(kind)}; {use} takes {wanted}", field=field or use
        )
    return kind
