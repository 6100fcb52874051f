"""Fixed DiffAugment against adaptive augmentation (StyleGAN2-ADA's p) at equal images seen.

    # every (size, seed, arm) run that is missing, then its FID and FD
    python benchmarks/ada_race.py train --sizes 100,500 --seeds 0,1,2,3,4 --kimg 5 --out ada_runs
    # the markdown table of everything finished so far
    python benchmarks/ada_race.py table --out ada_runs
    # per size, the two arms' final G_ema side by side (fixed | adaptive), one seed
    python benchmarks/ada_race.py grids --out ada_runs --seed 0 --dest docs/ada_race

For each data size N (``data.max_images=N`` of the shipped flowers64, or of ``--data PATH``), each
seed and each arm, one run of the ``minimal_cpu`` preset trains ``--kimg`` thousand images with
``python -m projected_gan train`` in a subprocess (``demo_recipes.run_training``):

- ``fixed``: the preset as it is (DiffAugment ``color,translation,cutout`` on every input);
- ``adaptive``: the same policy inside ``discriminator.augment.name=adaptive``, with
  ``speed_kimg`` = ``--ada-speed`` (default 2: fast enough to move p within a 5 kimg run, where
  ADA's 500 would not) and ``target`` = ``--ada-target`` (ADA's 0.6).

The final G_ema is then evaluated with ``fid`` (Inception, comparable in kind with papers,
though with few images it is biased upwards) and ``fd`` in ``--fd-network`` space (lite1), each on
``--num-images`` fakes against the run's whole training subset (N images, mirrored when the
preset mirrors). ``<out>/n<N>-<arm>-s<seed>/<NNNNN>-run/ada_race.json`` keeps the scores, the
adaptive run's final p (from the checkpoint) and the final sample grid; ``train`` skips runs that
have it, evaluates finished runs that lack it and resumes interrupted ones. ``table`` prints,
per size and arm, the mean +- sample std over seeds of FID and FD, the final p, and each seed's
values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_recipes  # a sibling script, not a package

from projected_gan.atomic import atomic_write_json

ARMS = ("fixed", "adaptive")
RESULT = "ada_race.json"


def arm_overrides(arm: str, args: argparse.Namespace) -> list[str]:
    """What an arm changes in the preset."""
    if arm == "fixed":
        return []
    return [
        "discriminator.augment.name=adaptive",
        f"discriminator.augment.speed_kimg={args.ada_speed}",
        f"discriminator.augment.target={args.ada_target}",
    ]


def run_overrides(size: int, seed: int, arm: str, folder: Path, args: argparse.Namespace) -> list:
    """The spec overrides of one run, on top of ``minimal_cpu``."""
    overrides = [
        f"data.max_images={size}",
        *([f"data.path={args.data}"] if args.data else []),
        f"train.kimg={args.kimg}",
        f"train.seed={seed}",
        f"train.snapshot_every={args.kimg}",
        f"train.sample_every={args.kimg}",
        "train.metrics_every=1000000",  # evaluated here, once, after training
        "metrics.names=[]",
        *([f"train.device={args.device}"] if args.device else []),
        f"output.dir={folder}",
        "output.name=run",
        *arm_overrides(arm, args),
        *args.set,
    ]
    return overrides


def finished(folder: Path, kimg: float) -> tuple[Path | None, bool]:
    """The run folder under ``folder`` (or None), and whether its newest checkpoint is at
    ``kimg``."""
    from projected_gan.checkpoint import find_checkpoints, load_checkpoint

    runs = sorted(folder.glob("*-run"))
    if not runs:
        return None, False
    ckpts = find_checkpoints(runs[-1])
    done = bool(ckpts) and load_checkpoint(ckpts[0]).meta["nimg"] >= round(kimg * 1000)
    return runs[-1], done


def train_run(folder: Path, overrides: list[str], kimg: float, threads: int) -> Path:
    """Train from scratch, or resume a run that has a checkpoint short of ``kimg``."""
    run, done = finished(folder, kimg)
    if run is not None and not done and any((run / "checkpoints").glob("*.safetensors")):
        cmd = [sys.executable, "-m", "projected_gan", "train", "--resume", str(run)]
        cmd += ["--no-progress", "--set", f"train.kimg={kimg}"]
        with open(folder / "train.log", "a") as log:
            subprocess.run(
                cmd,
                check=True,
                env=demo_recipes.child_env(threads),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    elif not done:
        demo_recipes.run_training(folder, overrides, threads)  # empties the folder first
    run, done = finished(folder, kimg)
    if run is None or not done:
        raise SystemExit(f"{folder}: training ended before kimg {kimg}; see {folder}/train.log")
    return run


def evaluate_run(run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """FID and FD of the run's final G_ema against its training subset, its final p and grid."""
    from projected_gan.checkpoint import find_checkpoints, load_checkpoint
    from projected_gan.commands import evaluate_checkpoint

    scores = evaluate_checkpoint(
        str(run),
        metrics="fid,fd",
        num=args.num_images,
        feature_network=args.fd_network,  # moves fd only: fid stays in the Inception space
        device=args.device,
    )
    ckpt = load_checkpoint(find_checkpoints(run)[0])
    p = ckpt.models["D"].get("augment.p")
    grids = sorted((run / "samples").glob("fakes0*.png"))
    return {
        "fid": scores["fid"],
        "fd": scores["fd"],
        "augment_p": None if p is None else float(p),
        "nimg": ckpt.meta["nimg"],
        "grid": str(grids[-1]) if grids else None,
    }


def train(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for size in args.sizes:
        for seed in args.seeds:
            for arm in args.arms:
                tag = f"n{size}-{arm}-s{seed}"
                folder = args.out / tag
                run, _ = finished(folder, args.kimg)
                if run is not None and (run / RESULT).is_file():
                    print(f"{tag}: done before ({run / RESULT})")
                    results.append(json.loads((run / RESULT).read_text()))
                    continue
                overrides = run_overrides(size, seed, arm, folder, args)
                run = train_run(folder, overrides, args.kimg, args.threads)
                result = {
                    "size": size,
                    "seed": seed,
                    "arm": arm,
                    "kimg": args.kimg,
                    "overrides": overrides,
                    "fd_network": args.fd_network,
                    "num_images": args.num_images,
                    "run_dir": str(run),
                    **evaluate_run(run, args),
                }
                atomic_write_json(run / RESULT, result)
                p = "" if result["augment_p"] is None else f", final p {result['augment_p']:.3f}"
                print(f"{tag}: FID {result['fid']:.1f}, FD {result['fd']:.1f}{p}")
                results.append(result)
    return results


def mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    mean = f"{statistics.fmean(values):.{digits}f}"
    return f"{mean} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else mean


def per_seed(rows: list[dict[str, Any]], key: str, digits: int) -> str:
    return " ".join(f"s{r['seed']}:{r[key]:.{digits}f}" for r in rows if r.get(key) is not None)


def table(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Print the markdown table of every finished run under ``--out``; return its rows."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for f in sorted(args.out.glob(f"*/*-run/{RESULT}")):
        r = json.loads(f.read_text())
        groups.setdefault((r["size"], r["arm"]), []).append(r)
    head = ["images", "arm", "kimg", "seeds", "FID", "FD", "final p"]
    head += ["FID per seed", "FD per seed", "p per seed"]
    print("| " + " | ".join(head) + " |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
    rows = []
    for (size, arm), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], ARMS.index(kv[0][1]))):
        rs.sort(key=lambda r: r["seed"])
        ps = [r["augment_p"] for r in rs if r.get("augment_p") is not None]
        row = {
            "size": size,
            "arm": arm,
            "kimg": sorted({r["kimg"] for r in rs}),
            "seeds": [r["seed"] for r in rs],
            "fid": [r["fid"] for r in rs],
            "fd": [r["fd"] for r in rs],
            "augment_p": ps,
        }
        rows.append(row)
        kimg = ",".join(f"{k:g}" for k in row["kimg"])
        print(
            f"| {size} | {arm} | {kimg} | {len(rs)} | {mean_std(row['fid'], 1)} | "
            f"{mean_std(row['fd'], 1)} | {mean_std(ps, 3)} | {per_seed(rs, 'fid', 1)} | "
            f"{per_seed(rs, 'fd', 1)} | {per_seed(rs, 'augment_p', 3) or '-'} |"
        )
    return rows


def grids(args: argparse.Namespace) -> list[str]:
    """Per size with both arms finished for ``--seed``: ``ada_race_n<N>_s<seed>.png`` in
    ``--dest``, the fixed arm's final G_ema grid for latent seeds 0..``--samples``-1, a white
    gap, the adaptive arm's grid for the same latents."""
    import torch

    from projected_gan.images import make_grid, save_image
    from projected_gan.inference import generate_images, load_generator

    runs: dict[int, dict[str, Path]] = {}
    for f in sorted(args.out.glob(f"*/*-run/{RESULT}")):
        r = json.loads(f.read_text())
        if r["seed"] == args.seed:
            runs.setdefault(r["size"], {})[r["arm"]] = f.parent
    written = []
    for size, arms in sorted(runs.items()):
        if set(arms) != set(ARMS):
            continue
        tiles = []
        for arm in ARMS:
            G = load_generator(str(arms[arm]), ema=True, device=torch.device("cpu"))
            images = generate_images(G, list(range(args.samples)))  # uint8
            tiles.append(make_grid(images))
        gap = torch.full((tiles[0].shape[0], tiles[0].shape[1], 8), 255, dtype=torch.uint8)
        path = args.dest / f"ada_race_n{size}_s{args.seed}.png"
        args.dest.mkdir(parents=True, exist_ok=True)
        save_image(torch.cat([tiles[0], gap, tiles[1]], dim=2), path)
        print(f"wrote {path}")
        written.append(str(path))
    return written


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=Path("ada_runs"))
    common.add_argument("--json", type=Path, help="also write the results / rows here")

    t = sub.add_parser("train", parents=[common], help="train and evaluate what is missing")
    t.add_argument("--sizes", type=_ints, default=[100, 500], help="data.max_images values")
    t.add_argument("--seeds", type=_ints, default=[0, 1, 2, 3, 4])
    t.add_argument("--arms", type=lambda s: s.split(","), default=list(ARMS))
    t.add_argument("--kimg", type=float, default=5.0, help="images per run, thousands")
    t.add_argument("--data", help="an image folder or zip instead of the shipped flowers64")
    t.add_argument("--ada-speed", type=float, default=2.0, help="speed_kimg of the adaptive arm")
    t.add_argument("--ada-target", type=float, default=0.6, help="target of the adaptive arm")
    t.add_argument("--num-images", type=int, default=1000, help="fakes per evaluation")
    t.add_argument("--fd-network", default="tf_efficientnet_lite1", help="fd's feature space")
    t.add_argument("--device", help="train.device and the evaluation's device (default: auto)")
    t.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of each run (0: unset)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    sub.add_parser("table", parents=[common], help="markdown table of the finished runs")
    g = sub.add_parser("grids", parents=[common], help="fixed | adaptive sample grids per size")
    g.add_argument("--seed", type=int, default=0, help="the runs' training seed")
    g.add_argument("--samples", type=int, default=16, help="latent seeds 0..N-1")
    g.add_argument("--dest", type=Path, default=Path("."), help="folder for the PNGs")
    args = p.parse_args(argv)
    if args.command == "train":
        bad = [a for a in args.arms if a not in ARMS]
        if bad:
            p.error(f"--arms: unknown arm(s) {bad}; arms: {', '.join(ARMS)}")
        if not args.sizes or min(args.sizes) < 2:
            p.error(f"--sizes: give data sizes of at least 2 images, got {args.sizes}")
        if not args.seeds:
            p.error("--seeds: give at least one seed")
        if args.kimg <= 0 or args.ada_speed <= 0:
            p.error("--kimg and --ada-speed must be > 0")
        if args.num_images < 2:
            p.error(f"--num-images must be at least 2, got {args.num_images}")
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
