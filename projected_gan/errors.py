"""Errors about what the user asked for, as opposed to bugs.

Each carries ``field``: the argument, spec field or command-line flag at fault, when known, so
callers route errors by type and field, never by matching message text. The command line turns
these (and unknown part names) into exit code 2 with a one-line message; any other exception is
a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["InputError", "PartBuildError", "UsageError"]


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


class PartBuildError(InputError):
    """A part refused its arguments; ``field`` names the argument (e.g. ``"image_size"``)."""


class UsageError(InputError):
    """A command or function was called wrongly (missing output, conflicting options, ...)."""
