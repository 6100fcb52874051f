"""The Projected GAN family as recipes, raced at equal images seen over several seeds.

    # every (recipe, seed) run that is missing, then its FID and KID
    python benchmarks/recipes.py train --seeds 0,1,2,3,4 --kimg 1 --num-images 250 \
        --set train.precision=fp32 --out recipe_runs
    # the markdown table of everything finished so far
    python benchmarks/recipes.py table --out recipe_runs
    # one training seed's final G_ema per recipe, side by side (same latents)
    python benchmarks/recipes.py grids --out recipe_runs --seed 0 --dest docs/recipes

Every recipe is the ``minimal_cpu`` preset (the shipped flowers at 64 px, FastGAN-lite, lite0
projector with CCM + CSM, multi-scale heads) plus a few overrides (``recipes()``):

- ``official``: the preset as it is, Projected GAN's recipe: hinge loss + DiffAugment;
- ``diffusion``: Diffusion-ProjectedGAN's noise on the feature maps (``diffusion`` augmentation,
  DiffAugment inside), its p moving ``--diffusion-speed`` kimg from 0 to 1 at the fastest;
- ``san``: SAN heads (normalised last layers, split objective);
- ``rpgan``: R3GAN's loss: relativistic pairing with R1 and R2 (``--gamma`` each, every
  ``--penalty-interval`` D steps);
- ``combined``: all three changes together (declared before any run, not picked afterwards).

Each run trains ``--kimg`` thousand images in a subprocess (``ada_race.train_run``: resumes an
interrupted run), then its final G_ema is scored with ``fid`` and ``kid`` (Inception, pool3) on
``--num-images`` fakes against the run's training images. ``<out>/<recipe>-s<seed>/*-run/
recipe.json`` keeps the scores, the seconds per kimg from the run's log and the final grid;
``train`` skips runs that have it. ``table`` prints per recipe the mean +- sample std over seeds
of FID, KID (x 1000) and s/kimg, and the paired difference to ``official`` (same seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ada_race  # a sibling script, not a package

from projected_gan.atomic import atomic_write_json

RECIPE_NAMES = ("official", "diffusion", "san", "rpgan", "combined")
RESULT = "recipe.json"


def recipes(args: argparse.Namespace) -> dict[str, list[str]]:
    """What each recipe changes in the preset."""
    diffusion = [
        "discriminator.augment={name: diffusion, policy: 'color,translation,cutout', "
        f"speed_kimg: {args.diffusion_speed}}}"
    ]
    san = ["discriminator.discriminator={name: multiscale, san: true}"]
    rpgan = [
        "loss.name=rpgan",
        f"loss.r1_gamma={args.gamma}",
        f"loss.r2_gamma={args.gamma}",
        f"loss.penalty_interval={args.penalty_interval}",
    ]
    return {
        "official": [],
        "diffusion": diffusion,
        "san": san,
        "rpgan": rpgan,
        "combined": [*diffusion, *san, *rpgan],
    }


def run_overrides(recipe: str, seed: int, folder: Path, args: argparse.Namespace) -> list[str]:
    """The spec overrides of one run, on top of ``minimal_cpu``."""
    return [
        *([f"data.path={args.data}"] if args.data else []),
        f"train.kimg={args.kimg}",
        f"train.seed={seed}",
        f"train.snapshot_every={args.kimg}",
        f"train.sample_every={args.kimg}",
        "train.metrics_every=1000000",  # scored here, once, after training
        "metrics.names=[]",
        *([f"train.device={args.device}"] if args.device else []),
        f"output.dir={folder}",
        "output.name=run",
        *recipes(args)[recipe],
        *args.set,
    ]


def seconds_per_kimg(run: Path) -> float | None:
    """Mean ``sec_per_kimg`` over the run's logged ticks after the first (warm-up) one."""
    log = run / "log.jsonl"
    if not log.is_file():
        return None
    values = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        v = record.get("sec_per_kimg")
        if isinstance(v, (int, float)):
            values.append(float(v))
    values = values[1:] or values
    return statistics.fmean(values) if values else None


def evaluate_run(run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """FID and KID of the run's final G_ema against its training images, and its final grid."""
    from projected_gan.commands import evaluate_checkpoint

    scores = evaluate_checkpoint(
        str(run), metrics="fid,kid", num=args.num_images, device=args.device
    )
    grids = sorted((run / "samples").glob("fakes0*.png"))
    return {
        "fid": scores["fid"],
        "kid": scores["kid"],
        "sec_per_kimg": seconds_per_kimg(run),
        "grid": str(grids[-1]) if grids else None,
    }


def train(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for seed in args.seeds:
        for recipe in args.recipes:
            tag = f"{recipe}-s{seed}"
            folder = args.out / tag
            run, _ = ada_race.finished(folder, args.kimg)
            if run is not None and (run / RESULT).is_file():
                print(f"{tag}: done before ({run / RESULT})")
                results.append(json.loads((run / RESULT).read_text()))
                continue
            overrides = run_overrides(recipe, seed, folder, args)
            run = ada_race.train_run(folder, overrides, args.kimg, args.threads)
            result = {
                "recipe": recipe,
                "seed": seed,
                "kimg": args.kimg,
                "overrides": overrides,
                "num_images": args.num_images,
                "run_dir": str(run),
                **evaluate_run(run, args),
            }
            atomic_write_json(run / RESULT, result)
            print(f"{tag}: FID {result['fid']:.1f}, KID x1000 {result['kid'] * 1000:.1f}")
            results.append(result)
    return results


def table(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Print the markdown table of every finished run under ``--out``; return its rows."""
    groups: dict[str, dict[int, dict[str, Any]]] = {}
    for f in sorted(args.out.glob(f"*/*-run/{RESULT}")):
        r = json.loads(f.read_text())
        r["kid1000"] = r["kid"] * 1000
        groups.setdefault(r["recipe"], {})[r["seed"]] = r
    official = groups.get("official", {})
    head = ["recipe", "kimg", "seeds", "FID", "KID x 1000", "s / kimg", "FID - official"]
    head += ["KID x 1000 - official", "FID per seed"]
    print("| " + " | ".join(head) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    rows = []
    for recipe in sorted(groups, key=lambda n: RECIPE_NAMES.index(n)):
        by_seed = groups[recipe]
        rs = [by_seed[s] for s in sorted(by_seed)]
        paired = [s for s in sorted(by_seed) if s in official]
        d_fid = [by_seed[s]["fid"] - official[s]["fid"] for s in paired]
        d_kid = [by_seed[s]["kid1000"] - official[s]["kid1000"] for s in paired]
        secs = [r["sec_per_kimg"] for r in rs if r.get("sec_per_kimg") is not None]
        row = {
            "recipe": recipe,
            "kimg": sorted({r["kimg"] for r in rs}),
            "seeds": [r["seed"] for r in rs],
            "fid": [r["fid"] for r in rs],
            "kid": [r["kid"] for r in rs],
            "sec_per_kimg": secs,
            "fid_minus_official": d_fid,
            "kid1000_minus_official": d_kid,
        }
        rows.append(row)
        same = recipe == "official"
        print(
            f"| {recipe} | {','.join(f'{k:g}' for k in row['kimg'])} | {len(rs)} | "
            f"{ada_race.mean_std(row['fid'], 1)} | "
            f"{ada_race.mean_std([r['kid1000'] for r in rs], 1)} | "
            f"{ada_race.mean_std(secs, 0)} | "
            f"{'-' if same else ada_race.mean_std(d_fid, 1)} | "
            f"{'-' if same else ada_race.mean_std(d_kid, 1)} | "
            f"{ada_race.per_seed(rs, 'fid', 1)} |"
        )
    return rows


def grids(args: argparse.Namespace) -> list[str]:
    """``recipes_s<seed>.png`` in ``--dest``: per finished recipe of training seed ``--seed``,
    in ``RECIPE_NAMES`` order, its final G_ema's grid for latent seeds 0..``--samples``-1
    (the same latents for all), separated by white gaps."""
    import torch

    from projected_gan.images import make_grid, save_image
    from projected_gan.inference import generate_images, load_generator

    runs = {}
    for f in sorted(args.out.glob(f"*/*-run/{RESULT}")):
        r = json.loads(f.read_text())
        if r["seed"] == args.seed:
            runs[r["recipe"]] = f.parent
    order = [n for n in RECIPE_NAMES if n in runs]
    if not order:
        raise SystemExit(f"no finished run of seed {args.seed} under {args.out}")
    tiles = []
    for name in order:
        G = load_generator(str(runs[name]), ema=True, device=torch.device("cpu"))
        tile = make_grid(generate_images(G, list(range(args.samples))))  # uint8 (C, H, W)
        gap = torch.full((tile.shape[0], tile.shape[1], 8), 255, dtype=torch.uint8)
        tiles += [tile, gap]
    path = args.dest / f"recipes_s{args.seed}.png"
    args.dest.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(tiles[:-1], dim=2), path)
    print(f"wrote {path} ({', '.join(order)}, left to right)")
    return [str(path)]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=Path("recipe_runs"))
    common.add_argument("--json", type=Path, help="also write the results / rows here")

    t = sub.add_parser("train", parents=[common], help="train and score what is missing")
    t.add_argument("--seeds", type=_ints, default=[0, 1, 2, 3, 4])
    t.add_argument("--recipes", type=lambda s: s.split(","), default=list(RECIPE_NAMES))
    t.add_argument("--kimg", type=float, default=1.0, help="images per run, thousands")
    t.add_argument("--data", help="an image folder or zip instead of the shipped flowers64")
    t.add_argument(
        "--diffusion-speed", type=float, default=0.2, help="speed_kimg of the diffusion noise"
    )
    t.add_argument("--gamma", type=float, default=1.0, help="R1 and R2 weight of rpgan")
    t.add_argument("--penalty-interval", type=int, default=4, help="D steps between R1/R2")
    t.add_argument("--num-images", type=int, default=250, help="fakes per evaluation")
    t.add_argument("--device", help="train.device and the evaluation's device (default: auto)")
    t.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of each run (0: unset)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    sub.add_parser("table", parents=[common], help="markdown table of the finished runs")
    g = sub.add_parser("grids", parents=[common], help="the recipes' sample grids, one seed")
    g.add_argument("--seed", type=int, default=0, help="the runs' training seed")
    g.add_argument("--samples", type=int, default=16, help="latent seeds 0..N-1")
    g.add_argument("--dest", type=Path, default=Path("."), help="folder for the PNG")
    args = p.parse_args(argv)
    if args.command == "train":
        bad = [r for r in args.recipes if r not in RECIPE_NAMES]
        if bad:
            p.error(f"--recipes: unknown recipe(s) {bad}; recipes: {', '.join(RECIPE_NAMES)}")
        if not args.seeds:
            p.error("--seeds: give at least one seed")
        if args.kimg <= 0 or args.diffusion_speed <= 0 or args.gamma < 0:
            p.error("--kimg and --diffusion-speed must be > 0, --gamma >= 0")
        if args.penalty_interval < 1 or args.num_images < 2:
            p.error("--penalty-interval must be >= 1 and --num-images >= 2")
    return args


def main(argv: list[str] | None = None) -> Any:
    args = parse_args(argv)
    result = {"train": train, "table": table, "grids": grids}[args.command](args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
