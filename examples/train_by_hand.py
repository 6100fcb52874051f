"""Train modules you put together yourself, without a spec file; then use the checkpoint alone.

    python examples/train_by_hand.py --kimg 0.2 --out runs/by_hand

The trainer takes the per-step batch from the batches (16 here). Because G, D and the loss are
built through the registries and the data by ``load_image_dataset``, the trainer describes the
run by one spec (``trainer.spec``, saved as ``spec.yaml`` and in every checkpoint):
``projected-gan generate``, ``eval``, ``export``, ``train --resume`` and ``--init`` work on this
run folder like on any other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import projected_gan as pg
from projected_gan.images import save_image_grid
from projected_gan.inference import generate_images, load_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kimg", type=float, default=0.2, help="thousands of real images")
    parser.add_argument("--out", default="runs/by_hand", help="the run folder")
    args = parser.parse_args()

    data = pg.load_image_dataset(pg.data.default_dataset_path(), 32)  # the shipped flowers
    G = pg.create("generators", "fastgan_lite", img_resolution=32, ngf=16)
    D = pg.ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "input_size": 64},
        img_resolution=32,
    )
    trainer = pg.Trainer(
        G,
        D,
        loss=pg.create("losses", "hinge"),
        batches=pg.InfiniteBatches(data, 16, mirror=True),
        run_dir=args.out,
        device="cpu",
    )
    run = trainer.fit(kimg=args.kimg)
    print(f"trained {trainer.nimg} images in batches of {trainer.batch}; run folder {run}")
    print("G is", pg.part_config(trainer.G))
    print("the run's spec:", trainer.spec.generator, trainer.spec.data.path)

    # The checkpoint alone gives the generator back.
    G_ema = load_generator(run)
    grid = Path(run) / "by_hand_grid.png"
    save_image_grid(generate_images(G_ema, range(16)), grid)
    print(f"wrote {grid}")


if __name__ == "__main__":
    main()
