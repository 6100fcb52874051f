"""JSON from a file, bounded: its size and its nesting depth are checked before it is parsed.

``json.loads`` recurses once per level: 100,000 nested brackets end in a ``RecursionError``, and
a large file is read whole. :func:`loads_bounded` measures the nesting first (strings removed,
brackets counted, without recursion) and refuses anything deeper than ``max_depth``;
:func:`read_json` also refuses a file larger than ``max_bytes`` before reading it. Both raise
:class:`JSONFileError` (an input error, one line, naming the file).
"""

from __future__ import annotations

import json
import os
import re
from itertools import accumulate
from pathlib import Path
from typing import Any

from projected_gan.errors import ReadError

__all__ = ["MAX_DEPTH", "JSONFileError", "json_depth", "loads_bounded", "read_json"]

MAX_DEPTH = 64
MAX_BYTES = 64 << 20
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JSONFileError(ReadError):
    """A JSON file (or JSON text in a file) that is unreadable, too large or too deeply nested."""


def json_depth(text: str) -> int:
    """The deepest nesting of brackets outside strings (no recursion, linear time)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    steps = (1 if c in "[{" else -1 for c in brackets)
    return max(accumulate(steps, initial=0))


def loads_bounded(text: str | bytes, where: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads(text)``, refusing text nested deeper than ``max_depth``."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        depth = json_depth(text)
        if depth > max_depth:
            raise JSONFileError(f"{where}: JSON nested {depth} levels deep (at most {max_depth})")
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise JSONFileError(f"{where} is not valid JSON: {exc}") from None


def read_json(
    path: str | os.PathLike, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH
) -> Any:
    """The JSON in ``path``; :class:`JSONFileError` if unreadable, too large or too deep."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise JSONFileError(f"{path} holds {size} bytes, more than the {max_bytes} expected")
        data = path.read_bytes()
    except OSError as exc:
        raise JSONFileError(f"{path} cannot be read: {exc.strerror or exc}") from None
    return loads_bounded(data, str(path), max_depth)
