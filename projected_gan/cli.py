"""The ``projected-gan`` command line: argument parsing only, each command calls one function.

Exit codes: 0 success, 1 runtime failure, 2 usage or input error (bad flag, unknown part, bad spec).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from projected_gan.registry import REGISTRIES, PluginError, UnknownPartError

EXIT_USAGE = 2

# Subcommands register themselves here: name -> (help, add_arguments, run).
_COMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator adding a subcommand whose function takes the parsed namespace."""

    def deco(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = (help, add_arguments, run)
        return run

    return deco


def parts_table(plugins: bool = False) -> str:
    """Markdown table of the registered parts (built-ins only unless ``plugins``)."""
    rows = ["| kind | name | summary |", "| --- | --- | --- |"]
    for kind, registry in REGISTRIES.items():
        for name in registry.names(plugins=plugins):
            entry = registry.entry(name)
            alias = f" (alias: {', '.join(entry.aliases)})" if entry.aliases else ""
            summary = entry.summary.replace("|", "\\|")
            rows.append(f"| {kind} | `{name}`{alias} | {summary} |")
    return "\n".join(rows)


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", choices=list(REGISTRIES), help="kind of part (default: all)")
    p.add_argument("--pattern", default="*", help="fnmatch filter on names, e.g. 'tf_*'")
    p.add_argument("--markdown", action="store_true", help="print the README's parts table")


@command("list", "list registered parts (built-ins and plugins)", _list_args)
def _run_list(args: argparse.Namespace) -> int:
    if args.markdown:
        print(parts_table())
        return 0
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    for kind in kinds:
        registry = REGISTRIES[kind]
        print(f"{kind}:")
        for name in registry.names(args.pattern):
            dist = registry.plugin_distribution(name)
            print(f"  {name}" + (f"  [plugin: {dist}]" if dist else ""))
    return 0


def _describe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=list(REGISTRIES), help="kind of part")
    p.add_argument("name", help="registered name")


@command("describe", "show a part's summary, arguments with defaults, and origin", _describe_args)
def _run_describe(args: argparse.Namespace) -> int:
    print(REGISTRIES[args.kind].describe(args.name))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from projected_gan import __version__

    parser = argparse.ArgumentParser(
        prog="projected-gan",
        description="Projected GANs as swappable parts: list parts, train, generate, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"projected-gan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, run) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    import projected_gan  # noqa: F401  (registers the built-in parts)

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._run(args)
    except (UnknownPartError, PluginError) as exc:
        print(f"projected-gan {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"projected-gan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
