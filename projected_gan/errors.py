"""Errors about what the user asked for, as opposed to bugs.

Each carries ``field``: the argument, spec field or command-line flag at fault, when known, so
callers route errors by type and field, never by matching message text. The command line turns
these (and unknown part names) into exit code 2 with a one-line message; any other exception is
a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["InputError", "PartBuildError", "UsageError"]


class InputError(ValueError):
    """Bad input: a spec, data, a part's arguments, a device, a command-line flag.

    Args:
        message: what is wrong and what was expected.
        field: where: an argument name (``"image_size"``), a spec field (``"data.path"``) or a
            flag (``"--seeds"``); None when it cannot be pinned down.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PartBuildError(InputError):
    """A part refused its arguments; ``field`` names the argument (e.g. ``"image_size"``)."""


class UsageError(InputError):
    """A command or function was called wrongly (missing output, conflicting options, ...)."""
