"""Train a Projected GAN end to end on the flower photos shipped with the package.

    python examples/train_minimal.py                # 6-11 minutes on a 2-core CPU
    python examples/train_minimal.py --kimg 200     # longer (use a GPU)
    python examples/train_minimal.py --data ./my_images --set data.resolution=128

Writes ``runs/<NNNNN>-.../`` with ``samples/`` (reals.png, fakes_init.png, fakes*.png),
``plots/losses.png`` (+ FD plots), ``log.jsonl``, ``metrics.jsonl`` and ``checkpoints/``, then
draws a final 8x8 grid from the newest checkpoint with the same code as ``projected-gan generate``.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from projected_gan import ExperimentSpec, build_from_spec, cpu_has_native_bf16
from projected_gan.commands import generate


def demo_overrides(
    sets: list[str], kimg: float | None, *, cuda: bool, native_bf16: bool
) -> list[str]:
    """The spec overrides of this example on top of the preset; the user's ``--set`` wins.

    On a GPU: the same recipe at a GPU's scale. On a CPU with native bf16 (AVX512-BF16/AMX):
    bf16 autocast, 1.6x faster a step there and within the seed spread of fp32 in FD after the
    full run (3 seeds each, ``docs/demo_recipe.md``); other CPUs keep fp32.
    """
    overrides = []
    if kimg is not None:
        overrides.append(f"train.kimg={kimg}")
    elif cuda:
        # Same recipe, a GPU's worth of it: bigger batches, 25x the images.
        overrides += ["train.kimg=200", "train.batch=64", "train.tick=4", "train.sample_every=20"]
        overrides += [
            "train.snapshot_every=50",
            "train.metrics_every=50",
            "metrics.num_images=2000",
        ]
    if not cuda and native_bf16:
        overrides.append("train.precision=bf16")
    return [*overrides, *sets]  # later overrides win


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset", default="minimal_cpu", help="shipped spec (default minimal_cpu)"
    )
    parser.add_argument("--data", help="image folder or zip (default: the shipped flowers64)")
    parser.add_argument("--kimg", type=float, help="thousands of real images to train on")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    overrides = demo_overrides(
        args.set, args.kimg, cuda=torch.cuda.is_available(), native_bf16=cpu_has_native_bf16()
    )
    spec = ExperimentSpec.load(
        preset=args.preset,
        overrides=[*overrides, *([("data.path", args.data)] if args.data else [])],
    )
    print(
        f"training {spec.generator.name} at {spec.data.resolution}px for {spec.train.kimg} kimg "
        f"({spec.train.precision})"
    )

    trainer = build_from_spec(spec)
    run_dir = trainer.fit()
    final = run_dir / "samples" / "final_grid.png"
    generate(str(run_dir), "0-63", grid=str(final))

    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        if len(rows) >= 2 and "fd" in rows[0]:
            print(
                f"FD: {rows[0]['fd']:.1f} at kimg {rows[0]['kimg']} -> "
                f"{rows[-1]['fd']:.1f} at kimg {rows[-1]['kimg']} (lower is better)"
            )
    print(f"done: {run_dir}\n  samples: {run_dir / 'samples'}\n  final grid: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
