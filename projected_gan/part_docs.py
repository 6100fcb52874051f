"""What the registries say about parts in words: argument docs, cards, did-you-mean hints.

Text only: :func:`argument_docs` reads a factory's ``Args:`` docstring sections,
:func:`describe_lines` lays out the card of ``projected-gan describe``, :func:`did_you_mean`
suggests close names and :func:`show_kwargs` shortens arguments for an error message.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["argument_docs", "describe_lines", "did_you_mean", "show_kwargs"]

_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^(\s*)(\*{0,2}\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def argument_docs(factory: Callable[..., Any]) -> dict[str, str]:
    """``{argument: one-line meaning}`` from the ``Args:`` sections of a part's docstrings.

    Reads Google-style sections of the factory's docstring (and, for a class, of ``__init__``);
    an argument's continuation lines are joined to its first line.
    """
    target = factory.func if isinstance(factory, functools.partial) else factory
    docs = [inspect.getdoc(target) or ""]
    if inspect.isclass(target):
        docs.append(inspect.getdoc(target.__init__) or "")
    found: dict[str, str] = {}
    for doc in docs:
        in_args, indent, current = False, None, None
        for line in doc.splitlines():
            if _ARGS_HEADER.match(line):
                in_args, indent, current = True, None, None
                continue
            if not in_args:
                continue
            if not line.strip():
                continue
            m = _ARG_LINE.match(line)
            depth = len(line) - len(line.lstrip())
            if indent is None and m:
                indent = depth
            if m and depth == indent:
                current = m.group(2).lstrip("*")
                found.setdefault(current, m.group(3).strip())
            elif indent is not None and depth > indent and current is not None:
                found[current] = (found[current] + " " + line.strip()).strip()
            else:
                in_args = False  # dedent: the section ended
    return found


def describe_lines(factory: Callable[..., Any], signature: inspect.Signature | None) -> list[str]:
    """The ``arguments:`` block of a part's card: each argument, its default and its meaning."""
    if signature is None:
        return []
    docs = argument_docs(factory)
    lines = ["  arguments:"]
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            lines.append(f"    {'*' if p.kind == p.VAR_POSITIONAL else '**'}{p.name}")
            continue
        default = "(required)" if p.default is p.empty else f"= {p.default!r}"
        lines.append(f"    {p.name} {default}")
        if p.name in docs:
            lines.append(f"        {docs[p.name]}")
    return lines


def did_you_mean(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the close matches of ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def show_kwargs(kwargs: dict[str, Any], limit: int = 160) -> str:
    """``width=-3, depth=2`` for a message, cut at ``limit`` characters."""
    text = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no arguments"
    return text if len(text) <= limit else text[: limit - 3] + "..."
