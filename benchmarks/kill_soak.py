"""Preemption soak: kill a small training run at random moments, resume it each time, count damage.

    python benchmarks/kill_soak.py --kills 20                  # SIGKILL (kill -9)
    python benchmarks/kill_soak.py --kills 5 --signal TERM     # a scheduler's preemption notice
    python benchmarks/kill_soak.py --kills 20 --json soak.json

The run is ``projected-gan train`` (as ``python -m projected_gan train``) on the ``minimal_cpu``
preset shrunk to 32 px, ngf 16, batch 8, one checkpoint every 16 images, metrics off. After the
first checkpoint exists, the script sends the signal, then starts ``train --resume RUN`` and does it
again, ``--kills`` times; the last resume runs to the end. With SIGKILL the moment is drawn among:
``startup`` (while a resume is still loading), ``training`` (a random time after the process logged
its first step) and ``checkpoint_write`` (the process gets ``PROJECTED_GAN_CHECKPOINT_WRITE_DELAY``,
so a checkpoint sits complete under its temp name before the rename; the kill lands inside that
pause). With SIGTERM the signal comes at a random time after the first step and the script times
signal -> process exit. Finally the same spec is trained once without interruption.

Printed JSON (``--json`` writes it too): kills, resumes and how they went, images lost per kill
(the last logged step before the kill minus the step the next process resumed from), damaged
checkpoints (any ``snapshot-*.safetensors`` that does not load), partial files the kills left and
the ones still there at the end (names of ``projected_gan.atomic``'s temp pattern), and the final
image count and G_ema weights against the uninterrupted run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from projected_gan.atomic import TEMP_NAME_RE
from projected_gan.checkpoint import WRITE_DELAY_ENV, CheckpointError, load_checkpoint

SNAPSHOT_IMAGES = 16
BATCH = 8
SPEC = [
    "data.resolution=32",
    "data.max_images=64",
    "generator.ngf=16",
    "discriminator.feature_network.input_size=64",
    f"train.batch={BATCH}",
    f"train.tick={BATCH / 1000}",  # one log line per step: progress is known to the step
    f"train.snapshot_every={SNAPSHOT_IMAGES / 1000}",
    "train.sample_every=1000",
    "train.metrics_every=1000",
    "train.deterministic=true",
    "train.device=cpu",
    "metrics.names=[]",
]
MOMENTS = ("startup", "training", "checkpoint_write")
RESUMING_RE = re.compile(r"resuming .* at kimg ([0-9.]+)")
REMOVED_RE = re.compile(r"removed (\d+) partial file")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, required=True, help="signals to send (>= 1)")
    p.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    p.add_argument(
        "--moments",
        default=",".join(MOMENTS),
        help=f"SIGKILL moments to draw from, comma list of {', '.join(MOMENTS)} (default all)",
    )
    p.add_argument("--kimg", type=float, default=0.4, help="length of the run (default 0.4)")
    p.add_argument("--max-wait", type=float, default=6.0, help="longest wait after the first step")
    p.add_argument("--write-delay", type=float, default=3.0, help="seconds of the write pause")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the runs")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--timeout", type=float, default=900, help="give up on a process after S")
    p.add_argument("--no-reference", action="store_true", help="skip the uninterrupted run")
    p.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp folder)")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    for flag, value in (("--kills", args.kills), ("--threads", args.threads)):
        if value < 1:
            p.error(f"{flag} must be >= 1, got {value}")
    if args.kimg * 1000 < 2 * SNAPSHOT_IMAGES:
        p.error(f"--kimg must cover at least two checkpoints ({2 * SNAPSHOT_IMAGES / 1000})")
    args.moments = [m.strip() for m in args.moments.split(",") if m.strip()]
    bad = [m for m in args.moments if m not in MOMENTS]
    if bad or not args.moments:
        p.error(f"--moments: unknown {', '.join(bad) or '(empty)'}; choose from {MOMENTS}")
    return args


class Child:
    """One ``projected_gan train`` process, its output files and what it logged."""

    def __init__(self, cmd: list[str], env: dict[str, str], logs: Path, log_file: Path) -> None:
        self.out, self.err = logs.with_suffix(".out"), logs.with_suffix(".err")
        self.log_file = log_file
        self.offset = log_file.stat().st_size if log_file.exists() else 0
        self.started = time.monotonic()
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)

    def new_ticks(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        with open(self.log_file, "rb") as f:
            f.seek(self.offset)
            lines = f.read().decode(errors="replace").splitlines()
        out = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line being written
                continue
            if "kimg" in record and "event" not in record:
                out.append(record)
        return out

    def progress(self) -> int:
        """Images reached, by the last step this process logged (0 if none)."""
        return max((round(r["kimg"] * 1000) for r in self.new_ticks()), default=0)

    def wait_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.proc.poll() is not None:
                return predicate()
            time.sleep(0.05)
        return False

    def text(self) -> tuple[str, str]:
        return self.out.read_text(errors="replace"), self.err.read_text(errors="replace")


def partial_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if TEMP_NAME_RE.match(p.name) and p.is_file()]


def check_checkpoints(run: Path, damaged: set[str]) -> int:
    """Load every snapshot; add the unloadable ones to ``damaged``; newest loadable nimg."""
    best = 0
    for path in sorted((run / "checkpoints").glob("snapshot-*.safetensors")):
        try:
            best = max(best, int(load_checkpoint(path).meta["nimg"]))
        except (CheckpointError, FileNotFoundError):  # pruned between glob and load: not damage
            if path.exists():
                damaged.add(path.name)
    return best


def wait_for_moment(
    kind: str, child: Child, run: Path, rng: random.Random, args: argparse.Namespace
) -> None:
    """Return at the moment to send the signal (or when the process ends, for ``end``)."""
    if kind == "end":
        child.proc.wait(timeout=args.timeout)
    elif kind == "startup":
        time.sleep(rng.uniform(0.5, 8.0))  # a resume takes ~10 s to load here
    elif kind == "checkpoint_write":
        seen = set(partial_files(run))  # what the last kill left: the cleaner's job
        temps = run / "checkpoints"
        if not child.wait_until(
            lambda: any(p not in seen for p in temps.glob(".snapshot-*")), args.timeout
        ):
            raise RuntimeError(f"no checkpoint write seen; see {child.err}")
        time.sleep(rng.uniform(0.0, args.write_delay * 0.9))  # inside the pause before rename
    else:
        if not child.wait_until(lambda: child.progress() > 0, args.timeout):
            raise RuntimeError(f"no training step seen; see {child.err}")
        time.sleep(rng.uniform(0.0, args.max_wait))


def train_cmd(out_dir: Path, kimg: float) -> list[str]:
    sets = [*SPEC, f"train.kimg={kimg}", f"output.dir={out_dir}"]
    cmd = [sys.executable, "-m", "projected_gan", "train", "--preset", "minimal_cpu"]
    return cmd + ["--no-progress"] + [a for s in sets for a in ("--set", s)]


def resume_cmd(run: Path) -> list[str]:
    return [sys.executable, "-m", "projected_gan", "train", "--resume", str(run), "--no-progress"]


def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    env.pop(WRITE_DELAY_ENV, None)
    sig = signal.SIGKILL if args.signal == "KILL" else signal.SIGTERM
    logs = work / "logs"
    logs.mkdir(parents=True)
    out_dir = work / "runs"
    damaged: set[str] = set()
    kinds: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    resumes = {"started": 0, "ok": 0, "failed": 0, "killed_while_loading": 0}
    term_exit_s: list[float] = []
    term_clean = 0
    left: dict[str, int] = {}  # every partial file seen after a kill: name -> bytes
    removed_at_start = 0
    t0 = time.monotonic()

    child = Child(train_cmd(out_dir, args.kimg), env, logs / "00", Path(os.devnull))
    if not child.wait_until(lambda: any(out_dir.glob("0*/checkpoints/snapshot-*")), args.timeout):
        raise RuntimeError(f"the first run made no checkpoint; see {child.err}")
    run = next(out_dir.glob("0*"))
    child.log_file, child.offset, resume_point = run / "log.jsonl", 0, 0
    finished = False
    for i in range(args.kills + 1):
        if i > 0:  # resume, then (unless this is the last one) pick the moment
            last = i == args.kills
            kind = "end" if last else "training"
            if not last and sig == signal.SIGKILL:
                kind = rng.choice(args.moments)
            child_env = dict(env)
            if kind == "checkpoint_write":
                child_env[WRITE_DELAY_ENV] = str(args.write_delay)
            child = Child(resume_cmd(run), child_env, logs / f"{i:02d}", run / "log.jsonl")
            resumes["started"] += 1
        else:
            kind = "training"
        event: dict[str, Any] = {"kind": kind, "resume_point": resume_point}
        wait_for_moment(kind, child, run, rng, args)
        if kind != "end":
            if child.proc.poll() is not None:  # it got to the end on its own
                finished = True
            else:
                progress = max(child.progress(), resume_point)
                sent, sent_wall = time.monotonic(), time.time()
                child.proc.send_signal(sig)
                child.proc.wait(timeout=args.timeout)
                kinds[kind] = kinds.get(kind, 0) + 1
                event["seconds_to_exit"] = round(time.monotonic() - sent, 2)
                if sig == signal.SIGTERM:  # the newest checkpoint's mtime: when the save ended
                    saved = _newest_mtime(run / "checkpoints")
                    event["seconds_to_saved"] = round(max(saved - sent_wall, 0.0), 2)
                event["progress"] = progress
        out, err = child.text()
        if i > 0:
            m = RESUMING_RE.search(err)
            if m and round(float(m.group(1)) * 1000) == resume_point:
                resumes["ok"] += 1
            elif m or child.proc.returncode not in (-signal.SIGKILL, -signal.SIGTERM):
                resumes["failed"] += 1
                event["error"] = err[-2000:]
            else:
                resumes["killed_while_loading"] += 1
            removed_at_start += sum(int(n) for n in REMOVED_RE.findall(out))
        if sig == signal.SIGTERM and "seconds_to_exit" in event:
            term_exit_s.append(event["seconds_to_exit"])
            term_clean += child.proc.returncode == 0 and "stopped by signal" in out
        if kind == "end" and child.proc.returncode != 0:
            event["error"] = err[-2000:]
        parts = partial_files(run)
        event["partial_files"] = [p.name for p in parts]
        left.update({p.name: p.stat().st_size for p in parts if p.name not in left})
        new_point = check_checkpoints(run, damaged)
        if "progress" in event:
            # A step finished after the last logged one (SIGTERM saves it) loses nothing.
            event["images_lost"] = max(event["progress"] - new_point, 0)
        resume_point = new_point
        event["returncode"] = child.proc.returncode
        events.append(event)
        print(json.dumps({"i": i, **event}), file=sys.stderr, flush=True)
        if finished:
            break

    lost = [e["images_lost"] for e in events if "images_lost" in e]
    leftover = partial_files(run)
    final = _final_checkpoint(run)
    result: dict[str, Any] = {
        "signal": args.signal,
        "kills": sum(kinds.values()),
        "kill_moments": kinds,
        "resumes": resumes["started"],
        "successful_resumes": resumes["ok"],
        "failed_resumes": resumes["failed"],
        "resumes_killed_while_loading": resumes["killed_while_loading"],
        "images_lost_per_kill": {
            "max": max(lost, default=0),
            "mean": round(sum(lost) / max(len(lost), 1), 2),
            "snapshot_every": SNAPSHOT_IMAGES,
            "batch": BATCH,
        },
        "damaged_checkpoints": len(damaged),
        "partial_files_left_by_kills": len(left),
        "partial_bytes_left_by_kills": sum(left.values()),
        "partial_files_removed_at_start": removed_at_start,
        "leftover_partial_files": len(leftover),
        "leftover_partial_bytes": sum(p.stat().st_size for p in leftover),
        "final_nimg": None if final is None else int(final.meta["nimg"]),
        "finished_before_all_kills": finished,
        "soak_seconds": round(time.monotonic() - t0, 1),
    }
    if sig == signal.SIGTERM:
        result["term_seconds_to_exit"] = {
            "max": max(term_exit_s, default=None),
            "mean": round(sum(term_exit_s) / max(len(term_exit_s), 1), 2),
        }
        result["term_clean_exits"] = term_clean
        saved_s = [e["seconds_to_saved"] for e in events if "seconds_to_saved" in e]
        result["term_seconds_to_saved_checkpoint_max"] = max(saved_s, default=None)
    if not args.no_reference:
        ref_dir = work / "reference"
        ref = subprocess.run(train_cmd(ref_dir, args.kimg), env=env, capture_output=True, text=True)
        if ref.returncode != 0:
            raise RuntimeError("the uninterrupted run failed: " + ref.stderr[-2000:])
        ref_ckpt = _final_checkpoint(next(ref_dir.glob("0*")))
        result["uninterrupted_nimg"] = int(ref_ckpt.meta["nimg"])
        if final is not None:
            diffs = [
                (final.models["G_ema"][k].float() - v.float()).abs().max().item()
                for k, v in ref_ckpt.models["G_ema"].items()
            ]
            result["final_g_ema_max_abs_diff_vs_uninterrupted"] = max(diffs, default=0.0)
    result["events"] = events
    return result


def _newest_mtime(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.glob("snapshot-*.safetensors")), default=0.0)


def _final_checkpoint(run: Path):
    paths = sorted((run / "checkpoints").glob("snapshot-*.safetensors"))
    return load_checkpoint(paths[-1]) if paths else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kill_soak_") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = soak(args, work)
    result.update(
        settings={"spec": SPEC, "kimg": args.kimg, "threads": args.threads, "seed": args.seed},
        torch=torch.__version__,
        load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
