"""``projected-gan train``: a new run from a spec or preset, or a resumed run folder."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from projected_gan import distributed, sources
from projected_gan.errors import UsageError
from projected_gan.spec import ExperimentSpec

__all__ = ["train"]


def train(
    spec_file: str | None = None,
    *,
    preset: str | None = None,
    data: str | None = None,
    overrides: Sequence[str] = (),
    resume: str | None = None,
    init: str | None = None,
    init_partial: bool = False,
    device: str | None = None,
    dry_run: bool = False,
    progress: bool = True,
) -> Path | None:
    """Train from a spec file / preset (+ overrides), or resume a run folder; return the run dir.

    Every flag is a spec override, applied after ``overrides``: ``data`` sets ``data.path``,
    ``device`` ``train.device``, ``init`` (``--init SOURCE``: start from trained weights, see
    :func:`projected_gan.training.init_from`) ``train.init.source``, ``init_partial``
    ``train.init.partial``; so ``spec.yaml`` and ``--dry-run`` show what runs.
    """
    from projected_gan.training.trainer import Trainer, build_from_spec

    # (key, value) pairs: a path stays a string whatever YAML would make of it.
    flags = [
        (key, value)
        for key, value in (
            ("data.path", data),
            ("train.device", device),
            ("train.init.source", init),
            ("train.init.partial", True if init_partial else None),
        )
        if value is not None
    ]

    info = distributed.dist_info()  # from torchrun's environment
    try:
        if resume is not None:
            if spec_file or preset or data:
                raise UsageError(
                    "--resume takes the spec from the run folder; drop SPEC/--preset/--data",
                    field="--resume",
                )
            if init or init_partial:
                raise UsageError(
                    "--init starts a new run from trained weights; --resume continues a run "
                    "with its own: use one of them",
                    field="--init",
                )
            sources.require(resume, (sources.RUN,), "--resume", field="--resume")
            trainer = Trainer.resume(resume, overrides=[*overrides, *flags])
            if trainer.is_main:
                print(
                    f"resuming {trainer.run_dir} at kimg {trainer.nimg / 1000:.3f}",
                    file=sys.stderr,
                )
        else:
            spec = ExperimentSpec.load(spec_file, preset=preset, overrides=[*overrides, *flags])
            if dry_run:
                from projected_gan.training.assemble import check_parts
                from projected_gan.training.init_weights import read_spec_source

                check_parts(spec)  # what a real run would refuse before reading data
                read_spec_source(spec)  # and a SOURCE it could not read
                print(spec.to_yaml())
                return None
            trainer = build_from_spec(spec)
        run_dir = trainer.fit(progress=progress)
    except BaseException as exc:
        # No orderly shutdown here: the other ranks may be waiting in a collective. This rank
        # exits non-zero, torchrun stops the others; the message says which rank failed.
        if info.enabled:
            print(
                f"projected-gan train: rank {info.rank} of {info.world_size} failed: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
                flush=True,
            )
        raise
    distributed.shutdown()
    if trainer.is_main:
        print(f"run folder: {run_dir}")
    return run_dir
