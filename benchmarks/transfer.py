"""Does starting from trained weights help on a hundred images? Fine-tuning against scratch.

    python benchmarks/transfer.py --out transfer_runs --json transfer_runs/transfer.json

One command does the whole measurement (issue #26), on the shipped flowers64 at 64 px with the
``minimal_cpu`` preset (CPU):

1. split the five classes: four for pre-training, the fifth (``--target``) alone;
2. pre-train once on the four classes for ``--pretrain-kimg`` (seed 0);
3. for each seed: ``finetune`` (``train.init`` = the pre-trained run) and ``scratch``, both on
   the fifth class alone for ``--kimg``, FD of G_ema against that class every ``--every`` kimg
   from kimg 0, and the final 8x8 grid of each (seeds 0-63);
4. per arm and kimg: mean and sample std of FD over seeds, each seed's value, and the paired
   difference finetune - scratch; ``fd_real_split`` (two random halves of the fifth class, in
   the same space) is the floor.

Both arms of a seed share the seed, so their latents, data order and augmentation draws agree;
only the starting weights differ. The fine-tune counts images of the fifth class from 0, so
"equal kimg" leaves the pre-training out: its wall time is reported apart.
Every run writes ``result.json`` when done and is skipped when it exists (``--force`` reruns),
so an interrupted measurement continues where it stopped; an unfinished run starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_feature_networks  # sibling scripts, not a package
import demo_recipes
from quality_curve import curve

from projected_gan.atomic import atomic_write_json

ARMS = ("finetune", "scratch")


def split_flowers(out: Path, target: str) -> tuple[Path, Path, list[str]]:
    """Extract the shipped flowers64 into ``out/pretrain/<class>/`` (every class but
    ``target``) and ``out/target/<target>/``; returns both folders and the classes."""
    from projected_gan.data import default_dataset_path

    with zipfile.ZipFile(default_dataset_path()) as z:
        members = [n for n in z.namelist() if n.count("/") == 1 and not n.endswith("/")]
        classes = sorted({n.split("/")[0] for n in members})
        if target not in classes:
            raise SystemExit(f"--target {target!r} is not a class of flowers64: {classes}")
        for name in members:
            side = "target" if name.split("/")[0] == target else "pretrain"
            dest = out / side / name
            if not dest.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(name))
    return out / "pretrain", out / "target", classes


def common(args: argparse.Namespace, data: Path, kimg: float, seed: int, every: float) -> list:
    """Overrides of every run: data, length, seed, metric cadence, CPU, own run folder."""
    return [
        f"data.path={data}",
        f"train.kimg={kimg}",
        f"train.seed={seed}",
        f"train.metrics_every={every}",
        f"train.snapshot_every={kimg}",
        f"train.sample_every={kimg}",
        f"metrics.num_images={args.num_images}",
        "train.device=cpu",
        "output.name=run",
        *args.set,
    ]


def train_run(
    folder: Path, overrides: list[str], kimg: float, args: argparse.Namespace
) -> dict[str, Any]:
    """One training run in ``folder`` (skipped when its result exists): FD curve, final grid."""
    from projected_gan.commands import generate

    result_file = folder / "result.json"
    if result_file.is_file() and not args.force:
        print(f"{folder.name}: done before, skipped ({result_file})", flush=True)
        return json.loads(result_file.read_text())
    load0 = os.getloadavg()[0]
    wall = demo_recipes.run_training(folder, [*overrides, f"output.dir={folder}"], args.threads)
    run_dir = demo_recipes.finished_run(folder, kimg)
    if run_dir is None:
        raise SystemExit(f"{folder.name}: training ended before kimg {kimg}; see {folder}")
    generate(str(run_dir), "0-63", grid=str(folder / "final_grid.png"))
    init_file = run_dir / "init.json"
    result = {
        "run_dir": str(run_dir),
        "overrides": overrides,
        "curve": [
            {"kimg": r["kimg"], "train_s": r["train_s"], "fd": r.get("fd")}
            for r in curve(run_dir / "metrics.jsonl")
        ],
        "train_wall_s": wall,
        "load_average_start": load0,
        "load_average_end": os.getloadavg()[0],
        "grid": str(folder / "final_grid.png"),
        "init": json.loads(init_file.read_text()) if init_file.is_file() else None,
    }
    atomic_write_json(result_file, result)
    fds = " ".join(f"{r['kimg']:g}:{r['fd']:.0f}" for r in result["curve"] if r["fd"] is not None)
    print(f"{folder.name}: FD {fds}  (train {wall:.0f} s wall, load {load0:.1f})", flush=True)
    return result


def paired(curves: dict[str, dict[int, list[dict]]]) -> list[dict[str, Any]]:
    """Per kimg: finetune - scratch FD of each seed, their mean and sample std."""
    rows = []
    kimgs = sorted({r["kimg"] for rs in curves["finetune"].values() for r in rs})
    for kimg in kimgs:
        diffs = {}
        for seed, rs in curves["finetune"].items():
            a = next((r["fd"] for r in rs if r["kimg"] == kimg), None)
            b = next((r["fd"] for r in curves["scratch"].get(seed, []) if r["kimg"] == kimg), None)
            if a is not None and b is not None:
                diffs[seed] = a - b
        if diffs:
            vals = list(diffs.values())
            std = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            rows.append(
                {"kimg": kimg, "mean": statistics.fmean(vals), "std": std, "per_seed": diffs}
            )
    return rows


def side_by_side(paths: list[Path], out: Path, rows: int = 4) -> Path:
    """The top ``rows`` rows of 8x8 grids, left to right with white gaps, as one PNG."""
    from PIL import Image

    grids = [Image.open(p).convert("RGB") for p in paths]
    width, side = grids[0].width, grids[0].width // 8
    gap = side // 4
    both = Image.new("RGB", (len(grids) * (width + gap) - gap, side * rows), "white")
    for i, grid in enumerate(grids):
        both.paste(grid.crop((0, 0, width, side * rows)), (i * (width + gap), 0))
    both.save(out)
    return out


def _print_row(label: str, row: dict[str, Any], sign: str = "") -> None:
    seeds = ", ".join(f"{v:{sign}.0f}" for v in row["per_seed"].values())
    mean, std = row["mean"], row["std"]
    print(f"{label:>18}  kimg {row['kimg']:>6.3f}  {mean:{sign}7.0f} +- {std:5.0f}  [{seeds}]")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    pretrain_data, target_data, classes = split_flowers(out / "data", args.target)
    print(f"pre-train on {[c for c in classes if c != args.target]}, target {args.target}")

    pre = common(args, pretrain_data, args.pretrain_kimg, 0, args.pretrain_kimg)
    pretrained = train_run(
        out / "pretrain", [*pre, "metrics.at_start=false"], args.pretrain_kimg, args
    )
    results: dict[str, dict[int, dict]] = {arm: {} for arm in ARMS}
    for seed in args.seeds:
        for arm in ARMS:
            overrides = [
                *common(args, target_data, args.kimg, seed, args.every),
                "metrics.at_start=true",
            ]
            if arm == "finetune":
                overrides.append(f"train.init.source={pretrained['run_dir']}")
            results[arm][seed] = train_run(out / f"{arm}-s{seed}", overrides, args.kimg, args)
        side_by_side(
            [out / f"{arm}-s{seed}" / "final_grid.png" for arm in ARMS], out / f"grids-s{seed}.png"
        )

    from projected_gan import ExperimentSpec
    from projected_gan.data import load_dataset

    spec = ExperimentSpec.load(
        preset=demo_recipes.PRESET, overrides=common(args, target_data, args.kimg, 0, args.every)
    )
    target = load_dataset(spec.data.model_copy(update={"path": str(target_data)}))
    floor_file = out / "fd_real_split.json"
    if floor_file.is_file():
        floor = json.loads(floor_file.read_text())["fd"]
    else:
        floor = demo_recipes.real_split_fd(target, spec)
        atomic_write_json(floor_file, {"fd": floor})
    curves = {arm: {s: r["curve"] for s, r in by_seed.items()} for arm, by_seed in results.items()}
    summary = compare_feature_networks.summarise(curves, "fd")
    diffs = paired(curves)
    mirrored = ", mirrored" if spec.data.mirror else ""
    print(
        f"\nFD against the {args.target} class ({target.images.shape[0]} images{mirrored}); "
        f"floor (two halves) {floor:.0f}; pre-training {pretrained['train_wall_s']:.0f} s wall"
    )
    for row in summary:
        _print_row(row["setup"], row)
    for row in diffs:
        _print_row("finetune - scratch", row, sign="+")
    record = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "classes": classes,
        "target_images": int(target.images.shape[0]),
        "pretrain": pretrained,
        "runs": results,
        "summary": summary,
        "paired": diffs,
        "fd_real_split": floor,
    }
    if args.json is not None:
        atomic_write_json(args.json, record)
        print(f"wrote {args.json}")
    return record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("transfer_runs"), help="runs, data, grids")
    p.add_argument("--target", default="tulips", help="the held-out class (default tulips)")
    p.add_argument("--pretrain-kimg", type=float, default=10.0)
    p.add_argument("--kimg", type=float, default=4.0, help="fine-tune / scratch length")
    p.add_argument("--every", type=float, default=1.0, help="kimg between FD evaluations")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--num-images", type=int, default=250, help="fakes per FD evaluation")
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of each run (0: unset)")
    p.add_argument("--force", action="store_true", help="rerun runs that have a result")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="every run")
    p.add_argument("--json", type=Path, help="also write everything here")
    return p.parse_args(argv)


if __name__ == "__main__":
    main()
