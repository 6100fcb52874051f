"""Errors about what the user asked for, as opposed to bugs.

Each carries ``field``: the argument, spec field or command-line flag at fault, when known, so
callers route errors by type and field, never by matching message text. The command line turns
these (and unknown part names) into exit code 2 with a one-line message; any other exception is
a bug and keeps its traceback.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["InputError", "PartBuildError", "ReadError", "UsageError", "one_line", "quote"]

#: The most characters of a file's value quoted in a message (a crafted value can be huge).
QUOTE_LIMIT = 80
#: The most characters of a message about a file (one line).
MESSAGE_LIMIT = 1000

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, QUOTE_LIMIT, QUOTE_LIMIT
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` on one line (runs of whitespace and control characters become one space),
    cut to ``limit`` characters."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(text)[: limit * 4]).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """A bounded, one-line ``repr`` of a value read from a file: nesting, length and shared
    references cannot make it large (``reprlib``), and it never spans lines."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a crafted object whose repr fails: say what type it is
        text = f"<{type(value).__name__}>"
    return one_line(text, limit)


class InputError(ValueError):
    """Bad input: a spec, data, a part's arguments, a device, a command-line flag, a file that is
    no run, checkpoint, export or network pickle, missing weights. Every error a user can cause
    derives from this one type: the command line catches it alone and exits 2 with the message
    (``tests/test_user_errors.py`` checks every exception class of the package).

    Args:
        message: what is wrong and what was expected.
        field: where: an argument name (``"image_size"``), a spec field (``"data.path"``) or a
            flag (``"--seeds"``); None when it cannot be pinned down.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    #: How the command line introduces the message: ``projected-gan CMD: <headline>: <message>``.
    headline = "error"


class ReadError(InputError):
    """A file that is not what it claims to be (malformed, truncated, crafted). Its message is
    one line of at most :data:`MESSAGE_LIMIT` characters, whatever the file held."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(one_line(message), field=field)


class PartBuildError(InputError):
    """A part refused its arguments; ``field`` names the argument (e.g. ``"image_size"``)."""


class UsageError(InputError):
    """A command or function was called wrongly (missing output, conflicting options, ...)."""
