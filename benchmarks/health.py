"""Do the health checks see a run go wrong, in time, without crying wolf? Does rollback help?

    # train every (scenario, arm, seed) not yet done; each a `projected-gan train` subprocess
    python benchmarks/health.py run --scenarios healthy,d_lr_x20,no_aug_100,g_lr_x50 \
        --seeds 0,1,2 --kimg 3 --out health_runs
    # the table (markdown) of everything trained so far
    python benchmarks/health.py table --out health_runs
    # what the signals cost: per step (in the step) and per tick / measurement (outside it)
    python benchmarks/health.py cost --steps 20
    # which conditions other thresholds would have fired on the watch runs (no training)
    python benchmarks/health.py replay --out health_runs --health divergence.grad_factor=10

A scenario is a list of spec overrides on top of ``minimal_cpu`` (:data:`SCENARIOS`): the
healthy demo recipe, and failures induced on purpose. Each runs in two arms at equal images
seen: ``watch`` (every condition's action is ``warn``: the run goes on, and its FD curve shows
what the failure does) and ``rollback`` (every action ``rollback``). Every run evaluates FD
(lite1 space, ``--fd-images`` samples) every ``--every`` kimg and snapshots as often, so a
rollback has somewhere to go.

Per run the table gives: each condition that fired and when (kimg), the FD where the curve
"turns upward for good" (the last minimum of the watch arm's FD curve followed by a rise of more
than ``--rise`` of it by the end; none if the curve never turns), the detection lag (first firing
minus that turn, kimg), FD at the first firing and at the end, and the rollback arm's final FD.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_recipes import PRESET, child_env, set_args

from projected_gan.atomic import atomic_write_json

SCENARIOS: dict[str, list[str]] = {
    "healthy": [],
    # D learns 20x faster than G: it wins, its r_t saturates, G's signal fades.
    "d_lr_x20": ["optim.d_lr=0.004"],
    # 100 images without augmentation: D memorises the training set.
    "no_aug_100": ["data.max_images=100", "discriminator.augment=null"],
    # G's learning rate 50x: its steps overshoot and the samples fall apart.
    "g_lr_x50": ["optim.g_lr=0.01"],
    # Stronger still. None of these fails within 1.6 kimg of minimal_cpu either (FastGAN's
    # spectral norm and the frozen feature network keep it learning); kept for longer runs.
    "d_lr_x100": ["optim.d_lr=0.02"],
    "g_lr_x250": ["optim.g_lr=0.05"],
    "g_lr_x1000": ["optim.g_lr=0.2"],
    "no_aug_100_d_lr_x100": [
        "data.max_images=100",
        "discriminator.augment=null",
        "optim.d_lr=0.02",
    ],
    # Never learns: G's learning rate 10 (x50000) from the start.
    "g_lr_x50000": ["optim.g_lr=10"],
    # A run that goes wrong mid-way: the healthy recipe to BREAK_AT kimg, then resumed with G's
    # (or D's) learning rate x50000. G's break ruins G within a tick; D's is milder (on the CPU,
    # two seeds of three recovered from it).
    "g_lr_jump": [],
    "d_lr_jump": [],
}
# Scenarios that train healthy to BREAK_AT kimg and then resume with these overrides.
BREAKS: dict[str, list[str]] = {"g_lr_jump": ["optim.g_lr=10"], "d_lr_jump": ["optim.d_lr=10"]}
BREAK_AT = 0.6
CONDITIONS = ("divergence", "collapse", "overfitting", "metric_worse")
ARMS = {"watch": "warn", "rollback": "rollback"}


def overrides(scenario: str, arm: str, seed: int, args: argparse.Namespace) -> list[str]:
    every = args.every
    base = [
        f"train.seed={seed}",
        f"train.kimg={args.kimg}",
        f"train.metrics_every={every}",
        f"train.snapshot_every={every}",
        f"train.sample_every={every}",
        "train.keep_checkpoints=2",
        f"metrics.num_images={args.fd_images}",
        f"output.dir={args.out / scenario / arm / str(seed)}",
        "output.name=run",
    ]
    actions = [f"health.{c}.action={ARMS[arm]}" for c in CONDITIONS]
    return [*base, *SCENARIOS[scenario], *actions, *args.set]


def run_one(scenario: str, arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    folder = args.out / scenario / arm / str(seed)
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    train = [sys.executable, "-m", "projected_gan", "train", "--no-progress"]
    sets = overrides(scenario, arm, seed, args)
    phases = [[*train, "--preset", PRESET, *set_args(sets)]]
    if scenario in BREAKS:  # healthy to BREAK_AT, then the rest of the run broken
        phases[0] += ["--set", f"train.kimg={BREAK_AT}"]
        resumed = set_args([f"train.kimg={args.kimg}", *BREAKS[scenario]])
        phases.append([*train, "--resume", str(folder / "00000-run"), *resumed])
    begin = time.perf_counter()
    with open(folder / "train.log", "w") as log:
        for cmd in phases:
            proc = subprocess.run(cmd, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
            if proc.returncode not in (0, 3):  # 3: a health check stopped the run
                raise SystemExit(
                    f"{scenario}/{arm}/{seed} failed (exit {proc.returncode}): {folder}"
                )
    run = next(folder.glob("*-run"))
    events, curve = [], []
    for line in (run / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("event") in ("health", "rollback"):
            events.append(r)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        curve.append((r["kimg"], r["fd"]))
    result = {
        "scenario": scenario,
        "arm": arm,
        "seed": seed,
        "exit": proc.returncode,
        "seconds": round(time.perf_counter() - begin, 1),
        "events": events,
        "fd_curve": curve,
    }
    atomic_write_json(done, result)
    return result


def turn_point(curve: list[tuple[float, float]], rise: float) -> tuple[float, float] | None:
    """(kimg, FD) of the last minimum of ``curve`` after which FD ends more than ``rise`` x
    higher; None when the curve does not turn upward for good."""
    if len(curve) < 2:
        return None
    i = min(range(len(curve)), key=lambda k: (curve[k][1], -k))
    last_fd = curve[-1][1]
    if i == len(curve) - 1 or last_fd <= curve[i][1] * (1 + rise):
        return None
    return curve[i]


def fd_at(curve: list[tuple[float, float]], kimg: float) -> float | None:
    """FD of the last evaluation at or before ``kimg``."""
    before = [fd for k, fd in curve if k <= kimg + 1e-9]
    return before[-1] if before else None


def summarise(watch: dict[str, Any], rollback: dict[str, Any] | None, rise: float) -> dict:
    curve = [tuple(p) for p in watch["fd_curve"]]
    firings = [e for e in watch["events"] if e.get("event") == "health"]
    first = firings[0] if firings else None
    turn = turn_point(curve, rise)
    row = {
        "scenario": watch["scenario"],
        "seed": watch["seed"],
        "fired": ", ".join(
            f"{c}@{min(e['kimg'] for e in firings if e['condition'] == c):g}"
            for c in CONDITIONS
            if any(e["condition"] == c for e in firings)
        )
        or "none",
        "turn_kimg": turn[0] if turn else None,
        "lag_kimg": round(first["kimg"] - turn[0], 3) if first and turn else None,
        "fd_at_firing": fd_at(curve, first["kimg"]) if first else None,
        "fd_min": min(fd for _, fd in curve) if curve else None,
        "fd_end": curve[-1][1] if curve else None,
    }
    if rollback is not None:
        rb_curve = rollback["fd_curve"]
        row["rollback_fd_end"] = rb_curve[-1][1] if rb_curve else None
        row["rollbacks"] = sum(e.get("event") == "rollback" for e in rollback["events"])
        row["rollback_exit"] = "= watch" if rollback.get("same_as_watch") else rollback["exit"]
    return row


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if isinstance(v, float) and abs(v) >= 100 else str(v)


def table(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for scenario in SCENARIOS:
        for seed_dir in sorted((args.out / scenario / "watch").glob("*/result.json")):
            watch = json.loads(seed_dir.read_text())
            rb_file = args.out / scenario / "rollback" / seed_dir.parent.name / "result.json"
            rb = json.loads(rb_file.read_text()) if rb_file.is_file() else None
            rows.append(summarise(watch, rb, args.rise))
    keys = ["scenario", "seed", "fired", "turn_kimg", "lag_kimg", "fd_at_firing", "fd_min"]
    keys += ["fd_end", "rollback_fd_end", "rollbacks", "rollback_exit"]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
    for scenario in SCENARIOS:
        pairs = [
            (r["fd_end"], r["rollback_fd_end"])
            for r in rows
            if r["scenario"] == scenario and r.get("rollback_fd_end") is not None
        ]
        same = sum(r["scenario"] == scenario and r.get("rollback_exit") == "= watch" for r in rows)
        if len(pairs) >= 2:
            gain = [w - b for w, b in pairs]
            print(
                f"\n{scenario}: final FD watch - rollback = {statistics.mean(gain):.0f} "
                f"± {statistics.stdev(gain):.0f} over {len(gain)} seeds"
                + (f" ({same} of them one run: nothing fired)" if same else "")
            )
    return rows


def cost(args: argparse.Namespace) -> dict[str, float]:
    """Seconds per step of ``minimal_cpu`` against the signals' own work, timed in one process:
    the step's extra device work (gradient norms of G and D, r_t and D's accuracy), repeated on
    the step's real gradients and logits, and the per-tick work (G-G_ema distance, one diversity
    measurement, the first one also building its feature network)."""
    import torch

    from projected_gan import ExperimentSpec, build_from_spec
    from projected_gan.training.recovery import health_signals
    from projected_gan.training.step import sign_stats

    overrides = [f"output.dir={args.out / 'cost'}", *args.set]
    spec = ExperimentSpec.load(preset=PRESET, overrides=overrides)
    trainer = build_from_spec(spec)
    for _ in range(3):  # warm-up
        trainer.step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        trainer.step()
    step_s = (time.perf_counter() - t0) / args.steps
    grads = [[p.grad for p in ps if p.grad is not None] for ps in (trainer.core.g_params,)]
    grads.append([p.grad for p in trainer.core.d_params if p.grad is not None])
    logits = torch.randn(spec.train.batch, 1000)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        for gs in grads:
            torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gs)).float())
        sign_stats(logits, -logits)
    extra_s = (time.perf_counter() - t0) / args.steps
    timings = {}
    for name in ("first (builds the extractor)", "again"):
        trainer.health.diversity_nimg = -(10**9)  # due now
        t0 = time.perf_counter()
        health_signals(trainer, trainer.nimg)
        timings[name] = time.perf_counter() - t0
    tick_steps = spec.train.tick * 1000 / spec.train.batch
    sample_steps = spec.train.sample_every * 1000 / spec.train.batch
    out = {
        "step_s": step_s,
        "in_step_extra_s": extra_s,
        "in_step_share": extra_s / step_s,
        "diversity_first_s": timings["first (builds the extractor)"],
        "diversity_s": timings["again"],
        "diversity_share_at_sample_every": timings["again"] / (sample_steps * step_s),
        "tick_steps": tick_steps,
    }
    for k, v in out.items():
        print(f"{k}: {v:.4g}")
    return out


def replay(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Feed every watch run's tick records and FD values, in order, to a fresh
    :class:`HealthMonitor` whose thresholds are the spec's defaults with ``--health`` overrides:
    which conditions *would* have fired, and first when (kimg), without training again. (A
    monitor is pure bookkeeping on these numbers, so with the run's own thresholds it repeats
    the run's firings exactly.)"""
    from projected_gan.spec import ExperimentSpec
    from projected_gan.training import HealthMonitor

    sets = [f"health.{o}" for o in args.health]
    spec = ExperimentSpec.load(preset=PRESET, overrides=sets).health
    out = {}
    for log in sorted(args.out.glob("*/watch/*/*-run/log.jsonl")):
        monitor, first = HealthMonitor(spec), {}
        for line in log.read_text().splitlines():
            r = json.loads(line)
            if r.get("event") == "metrics":
                firings = monitor.check_metric(r.get("fd"), r["kimg"])
            elif "event" not in r:
                firings = monitor.check_tick(r)
            else:
                firings = []
            for f in firings:
                first.setdefault(f.condition, f.kimg)
        name = "/".join(log.relative_to(args.out).parts[:3])
        out[name] = first
        print(f"{name}: " + (", ".join(f"{c}@{k:g}" for c, k in first.items()) or "none"))
    return out


def run(args: argparse.Namespace) -> None:
    for scenario in args.scenarios:
        for seed in args.seeds:
            for arm in args.arms:
                if scenario == "healthy" and arm == "rollback":
                    continue  # nothing to roll back from: the healthy runs check false alarms
                if arm == "rollback" and "watch" in args.arms:
                    watch = run_one(scenario, "watch", seed, args)
                    if not any(e.get("event") == "health" for e in watch["events"]):
                        # Nothing fired: the rollback run would be the watch run, bit for bit
                        # (training is deterministic, the actions differ only once one fires).
                        same = {**watch, "arm": "rollback", "seconds": 0.0, "same_as_watch": True}
                        folder = args.out / scenario / arm / str(seed)
                        folder.mkdir(parents=True, exist_ok=True)
                        atomic_write_json(folder / "result.json", same)
                r = run_one(scenario, arm, seed, args)
                fired = [f"{e['condition']}@{e['kimg']}" for e in r["events"] if "condition" in e]
                print(f"{scenario}/{arm}/{seed}: exit {r['exit']}, {r['seconds']} s, {fired}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=("run", "table", "cost", "replay"))
    p.add_argument("--steps", type=int, default=20, help="cost: steps timed")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--arms", default="watch,rollback")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--kimg", type=float, default=3.0)
    p.add_argument("--every", type=float, default=0.25, help="kimg between FD and snapshots")
    p.add_argument("--fd-images", type=int, default=200)
    p.add_argument("--rise", type=float, default=0.1, help="FD rise that counts as a turn")
    p.add_argument("--out", type=Path, default=Path("health_runs"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="every run")
    p.add_argument(
        "--health",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="replay: a health threshold, e.g. divergence.grad_factor=10",
    )
    args = p.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    args.arms = [a for a in args.arms.split(",") if a]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.out = args.out.resolve()
    return args


def main(argv: list[str] | None = None) -> Any:
    args = parse_args(argv)
    os.environ.setdefault("PYTHONWARNINGS", "default")
    commands = {"run": run, "table": table, "cost": cost, "replay": replay}
    return commands[args.command](args)


if __name__ == "__main__":
    main()
