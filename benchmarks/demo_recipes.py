"""Which recipe gives the most recognisable samples in the ~10-minute CPU demo? Measure it.

    # 1. relative speed of candidates (interleaved rounds, so load from other jobs hits all alike)
    python benchmarks/demo_recipes.py speed --candidates before,one_class,fnet64 --rounds 3

    # 2. train candidates at an image budget, FD curve + final grid per seed
    python benchmarks/demo_recipes.py train --candidates before,one_class --seeds 0,1,2 \
        --kimg 5 --every 1 --out demo_runs --json demo_runs/results.json

    # 3. table of everything trained so far (mean, spread over seeds)
    python benchmarks/demo_recipes.py table --out demo_runs

A candidate is a list of spec overrides on top of ``minimal_cpu`` (:data:`CANDIDATES`); data
sets other than the shipped flowers64 can be given with ``--set data.path=...``.

``speed`` times ``--steps`` steps of every candidate in turn, ``--rounds`` times, in one process,
and prints img/s (median) and the ratio to the first candidate: on a busy machine the ratios move
much less than the absolute numbers. Image budgets for equal wall time are ``kimg * ratio``.

``train`` runs each (candidate, seed) as ``python -m projected_gan train`` in a subprocess, then
draws the final 8x8 grid (seeds 0-63) as the example does, and writes ``demo_result.json`` (FD
curve, texture score from ``texture.py``, train wall time); ``table`` reads them back. FD is the
``fd`` metric of G_ema against the candidate's own training set; ``fd_real_split`` (two random
halves of that set) is its floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from projected_gan.atomic import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
PRESET = "minimal_cpu"

# The state of minimal_cpu before issue 19, spelled out, so "before" stays reproducible after
# the preset changes.
BEFORE = [
    "data.resolution=64",
    "generator.ngf=32",
    "discriminator.feature_network.input_size=128",
    "discriminator.feature_network.resize=upsample_only",
    "discriminator.feature_network.blur=0",
    "discriminator.augment.policy=color,translation,cutout",
    "optim.lr=0.0002",
    "train.batch=16",
    "train.ema_kimg=2",
]
BLUR = "discriminator.feature_network.blur=1"
F64 = "discriminator.feature_network.input_size=64"
# name -> spec overrides on top of the preset (each spells out the whole recipe).
CANDIDATES: dict[str, list[str]] = {
    "before": BEFORE,
    # one change at a time (speed and quality screens)
    "blur1": [*BEFORE, BLUR],
    "fnet64": [*BEFORE, F64],  # the new minimal_cpu
    "res32_fnet64": [*BEFORE, "data.resolution=32", F64],
    "batch8": [*BEFORE, "train.batch=8"],
    "bf16": [*BEFORE, "train.precision=bf16"],
    "fnet64_bf16": [*BEFORE, F64, "train.precision=bf16"],  # minimal_cpu in bf16 (#27)
    # combined
    "blur1_f64": [*BEFORE, BLUR, F64],
    "blur1_b8_f64": [*BEFORE, BLUR, "train.batch=8", F64],
}


def child_env(threads: int = 0) -> dict[str, str]:
    env = dict(os.environ)
    if threads:  # fewer OpenMP threads than busy cores: workers stop waiting on each other
        env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def overrides_for(name: str, args: argparse.Namespace) -> list[str]:
    return list(CANDIDATES[name])


# ------------------------------------------------------------------------------------ speed
def speed(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from projected_gan import ExperimentSpec, build_from_spec

    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.candidates
    trainers = {}
    for name in names:
        spec = ExperimentSpec.load(
            preset=PRESET,
            overrides=[*overrides_for(name, args), "train.device=cpu", f"output.dir={args.tmp}"],
        )
        trainers[name] = build_from_spec(spec)
        for _ in range(args.warmup):
            trainers[name].step()
    per_img: dict[str, list[float]] = {n: [] for n in names}
    load = []
    for _ in range(args.rounds):
        for name in names:
            t = trainers[name]
            load.append(os.getloadavg()[0])
            begin = time.perf_counter()
            for _ in range(args.steps):
                t.step()
            per_img[name].append((time.perf_counter() - begin) / (args.steps * t.batch))
    ref = statistics.median(per_img[names[0]])
    rows = []
    for name in names:
        s = statistics.median(per_img[name])
        row = {
            "candidate": name,
            "img_per_s": 1 / s,
            "img_per_s_rounds": [1 / x for x in per_img[name]],
            "ratio": ref / s,
        }
        if args.budget_s and args.ref_img_s:
            row["budget_kimg"] = args.budget_s * args.ref_img_s * row["ratio"] / 1000
        rows.append(row)
    result = {
        "rounds": args.rounds,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "load_average_min_max": [min(load), max(load)],
        "rows": rows,
    }
    print(f"load average (1 min) during timing: {min(load):.1f} .. {max(load):.1f}")
    print(f"{'candidate':<20} {'img/s':>7} {'ratio':>6} {'kimg':>6}  per round")
    for r in rows:
        kimg = f"{r['budget_kimg']:.2f}" if "budget_kimg" in r else "-"
        rounds = " ".join(f"{x:.1f}" for x in r["img_per_s_rounds"])
        print(f"{r['candidate']:<20} {r['img_per_s']:7.2f} {r['ratio']:6.2f} {kimg:>6}  {rounds}")
    return result


# ------------------------------------------------------------------------------------ train
def train_one(name: str, seed: int, kimg: float, args: argparse.Namespace) -> dict[str, Any]:
    from projected_gan import ExperimentSpec
    from projected_gan.data import default_dataset_path, load_dataset

    tag = f"{name}-k{kimg:g}-s{seed}"
    folder = args.out / tag  # holds one run folder, <NNNNN>-run
    result_file = folder / "demo_result.json"
    if result_file.is_file() and not args.force:
        print(f"{tag}: done before, skipped ({result_file})")
        return json.loads(result_file.read_text())
    overrides = [
        *overrides_for(name, args),
        f"train.kimg={kimg}",
        f"train.seed={seed}",
        f"train.metrics_every={args.every}",
        f"train.snapshot_every={kimg}",
        f"train.sample_every={kimg}",
        f"metrics.num_images={args.num_images}",
        "train.device=cpu",
        f"output.dir={folder}",
        "output.name=run",
        *args.set,
    ]
    spec = ExperimentSpec.load(preset=PRESET, overrides=overrides)  # fail early on a typo
    run_dir = finished_run(folder, kimg)
    train_wall, load0 = None, os.getloadavg()[0]
    if run_dir is None or args.force:
        train_wall = run_training(folder, overrides, args.threads)
        run_dir = finished_run(folder, kimg)
        if run_dir is None:
            raise SystemExit(f"{tag}: training ended without reaching kimg {kimg}; see {folder}")
    from projected_gan.commands import generate

    begin = time.perf_counter()
    generate(str(run_dir), "0-63", grid=str(folder / "final_grid.png"))
    grid_s = time.perf_counter() - begin

    from projected_gan.inference import generate_images, load_generator

    G = load_generator(str(run_dir))
    fakes = generate_images(G, list(range(1000, 1000 + args.num_images)))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from quality_curve import curve

    rows = curve(run_dir / "metrics.jsonl")
    data_path = spec.data.path or str(default_dataset_path())
    ds = load_dataset(spec.data.model_copy(update={"path": data_path}))
    floor_key = f"{data_path}@{spec.data.resolution}"
    floors = _floors(args.out)
    if floor_key not in floors:
        floors[floor_key] = real_split_fd(ds, spec)
        atomic_write_json(args.out / "fd_floors.json", floors)
    from texture import texture_scores

    texture = texture_scores(fakes, ds.images)
    result = {
        "candidate": name,
        "seed": seed,
        "kimg": kimg,
        "overrides": overrides,
        "num_images_data": int(ds.images.shape[0]),
        "curve": [{"kimg": r["kimg"], "train_s": r["train_s"], "fd": r.get("fd")} for r in rows],
        "final_fd": rows[-1].get("fd") if rows else None,
        "fd_real_split": floors[floor_key],
        "train_wall_s": train_wall,
        "grid_s": grid_s,
        "texture": texture,
        "load_average_start": load0,
        "load_average_end": os.getloadavg()[0],
        "grid": str(folder / "final_grid.png"),
        "run_dir": str(run_dir),
    }
    atomic_write_json(result_file, result)
    wall = f"{train_wall:.0f} s" if train_wall is not None else "reused"
    fds = " ".join(f"{r['kimg']:g}:{r.get('fd', float('nan')):.0f}" for r in rows)
    print(
        f"{tag}: FD {fds}  (train {wall} wall, load {load0:.1f}->{result['load_average_end']:.1f})"
    )
    return result


def set_args(overrides: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]`` for ``projected-gan train``."""
    return [a for o in overrides for a in ("--set", o)]


def run_training(folder: Path, overrides: list[str], threads: int = 0) -> float:
    """``projected-gan train --preset minimal_cpu`` + ``overrides`` in a subprocess, in a fresh
    ``folder`` (emptied first; the log goes to ``train.log``); returns the wall seconds."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    cmd = [sys.executable, "-m", "projected_gan", "train", "--preset", PRESET, "--no-progress"]
    cmd += set_args(overrides)
    begin = time.perf_counter()
    with open(folder / "train.log", "a") as log:
        subprocess.run(
            cmd, check=True, env=child_env(threads), stdout=log, stderr=subprocess.STDOUT
        )
    return time.perf_counter() - begin


def real_split_fd(dataset: Any, spec: Any) -> float:
    """FD between two random halves of ``dataset`` (mirrored as the run's metric sees it) in
    the spec's metric network: the floor of the runs' FD on that data."""
    import torch

    from projected_gan.metrics.evaluate import evaluate_real_split

    images = dataset.images
    if spec.data.mirror:  # the metric compares against the mirrored set too
        images = torch.cat([images, images.flip(3)])
    split = evaluate_real_split(
        type("D", (), {"images": images})(), "fd", feature_network=spec.metrics.feature_network
    )
    return split["fd"]


def finished_run(folder: Path, kimg: float) -> Path | None:
    """The run folder under ``folder`` whose metrics reached ``kimg``, else None."""
    for run in sorted(folder.glob("*-run")):
        rows = (
            (run / "metrics.jsonl").read_text().splitlines()
            if (run / "metrics.jsonl").is_file()
            else []
        )
        if rows and json.loads(rows[-1])["kimg"] >= kimg - 0.02:
            return run
    return None


def _floors(out: Path) -> dict[str, float]:
    f = out / "fd_floors.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def train(args: argparse.Namespace) -> list[dict[str, Any]]:
    args.out.mkdir(parents=True, exist_ok=True)
    budgets = dict(kv.split("=") for kv in args.kimg_each) if args.kimg_each else {}
    results = []
    for name in args.candidates:
        kimg = float(budgets.get(name, args.kimg))
        for seed in args.seeds:
            results.append(train_one(name, seed, kimg, args))
    return results


def table(args: argparse.Namespace) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for f in sorted(args.out.glob("*/demo_result.json")):
        r = json.loads(f.read_text())
        groups.setdefault((r["candidate"], r["kimg"]), []).append(r)
    rows = []
    print(
        f"{'candidate':<22} {'kimg':>5} {'seeds':>5} {'final FD mean':>13} {'spread':>7} "
        f"{'floor':>6}  each seed"
    )
    for (name, kimg), rs in sorted(groups.items(), key=lambda kv: _mean(kv[1])):
        fds = [r["final_fd"] for r in rs]
        mean = statistics.fmean(fds)
        spread = (max(fds) - min(fds)) / 2
        row = {
            "candidate": name,
            "kimg": kimg,
            "seeds": [r["seed"] for r in rs],
            "final_fd": fds,
            "mean": mean,
            "half_range": spread,
            "floor": rs[0]["fd_real_split"],
            "curves": {r["seed"]: r["curve"] for r in rs},
        }
        rows.append(row)
        each = " ".join(f"s{r['seed']}:{r['final_fd']:.0f}" for r in rs)
        print(
            f"{name:<22} {kimg:5g} {len(rs):5d} {mean:13.0f} {spread:7.0f} "
            f"{row['floor']:6.0f}  {each}"
        )
    return rows


def figures(args: argparse.Namespace) -> list[str]:
    """Small PNGs for the docs: the top ``--rows`` rows of each run's final 8x8 grid, side by side.

    ``--candidates`` are run tags ``name-kKIMG`` (seed ``--seed``), left to right, white gaps.
    """
    from PIL import Image

    grids = [Image.open(args.out / f"{t}-s{args.seed}" / "final_grid.png") for t in args.candidates]
    width, side = grids[0].width, grids[0].width // 8
    gap = side // 4
    both = Image.new("RGB", (len(grids) * (width + gap) - gap, side * args.rows), "white")
    for i, grid in enumerate(grids):
        both.paste(
            grid.convert("RGB").crop((0, 0, width, side * args.rows)), (i * (width + gap), 0)
        )
    args.docs.mkdir(parents=True, exist_ok=True)
    path = args.docs / f"{'_vs_'.join(args.candidates)}-s{args.seed}.png"
    # 256 colours, no dithering: a third of the bytes, and no dither dots to mistake for texture
    both.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    return [str(path)]


def _mean(rs: list[dict[str, Any]]) -> float:
    return statistics.fmean(r["final_fd"] for r in rs)


# ------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--candidates", type=lambda s: s.split(","), default=["before"])
    common.add_argument("--json", type=Path)

    s = sub.add_parser("speed", parents=[common], help="relative img/s of candidates")
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--steps", type=int, default=3, help="timed steps per candidate per round")
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    s.add_argument("--budget-s", type=float, help="seconds of training to turn ratios into kimg")
    s.add_argument("--ref-img-s", type=float, help="img/s of the first candidate, quiet machine")
    s.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()) / "demo_speed")

    t = sub.add_parser("train", parents=[common], help="train candidates, FD curves + grids")
    t.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    t.add_argument("--kimg", type=float, default=5.0)
    t.add_argument("--kimg-each", nargs="*", metavar="NAME=KIMG", help="per-candidate budgets")
    t.add_argument("--every", type=float, default=1.0, help="kimg between FD evaluations")
    t.add_argument("--num-images", type=int, default=250, help="fakes per FD evaluation")
    t.add_argument("--out", type=Path, default=Path("demo_runs"))
    t.add_argument("--force", action="store_true", help="rerun runs that have a result")
    t.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of each run (0: unset)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    b = sub.add_parser("table", parents=[common], help="summarise finished runs")
    b.add_argument("--out", type=Path, default=Path("demo_runs"))
    f = sub.add_parser("figures", parents=[common], help="grids for the docs")
    f.add_argument("--out", type=Path, default=Path("demo_runs"))
    f.add_argument("--docs", type=Path, default=REPO / "docs" / "demo_recipe")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--rows", type=int, default=3, help="rows of the 8x8 grid to keep")
    args = p.parse_args(argv)
    unknown = [c for c in args.candidates if c not in CANDIDATES]
    if unknown and args.command in ("speed", "train"):
        p.error(f"unknown candidate(s) {unknown}; known: {', '.join(CANDIDATES)}")
    return args


def main(argv: list[str] | None = None) -> Any:
    args = parse_args(argv)
    commands = {"speed": speed, "train": train, "table": table, "figures": figures}
    result = commands[args.command](args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
