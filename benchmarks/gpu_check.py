"""The prepared GPU check: missing packages, ``cuda`` tests, throughput, a step profile; 1 JSON.

It installs what is missing, runs the ``cuda`` tests, times training throughput in each
configuration and profiles one step, then prints ONE JSON.

    bash benchmarks/gpu_check.sh              # on a fresh GPU machine (benchmarks/README.md)
    bash benchmarks/gpu_check.sh --dry-run    # the same stages on the CPU at tiny size

Standard library only: it runs before the missing packages are installed. Every stage runs in
its own process under its own time limit, inside one overall budget (default 560 s, so a
10-minute slot holds it); a stage that runs out of time is killed and recorded as ``timeout``,
one that no longer fits is ``skipped``, and the JSON, rewritten to ``--out`` after every stage,
always holds what finished. Only ``gpu_check.json`` and ``gpu_check.log`` are written there.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
from gpu_check_report import PRESETS, markdown_table, parse_junit, parse_verbose, summarise  # noqa: E402

# Declared dependencies that no stage imports: kornia is not imported by projected_gan at all;
# torch-fidelity only serves the ``fid`` metric, whose Inception weights are not carried.
NOT_NEEDED = {
    "kornia": "declared, but no module of projected_gan imports it",
    "torch-fidelity": "only for the fid metric (its ~90 MB Inception weights are not carried)",
}
# name -> spec overrides: our fp32 eager baseline, then one switch at a time.
CONFIGS = {
    "baseline": (
        "train.precision=fp32",
        "train.tf32=false",
        "train.channels_last=false",
        "train.compile=false",
    ),
    "tf32": ("train.precision=fp32", "train.tf32=true", "train.channels_last=false"),
    "default": (),  # the preset as shipped: precision auto (bf16 on CUDA), TF32, channels_last
    "compile": ("train.compile=true",),
}
TINY = [  # --dry-run: every model at its smallest, on a 2-core CPU
    "--resolution", "32", "--batch", "4", "--threads", "1",
    "--set", "generator.ngf=8", "--set", "discriminator.feature_network.input_size=64",
]  # fmt: skip
STAGE_LIMITS = {"deps": 120, "tests": 240, "profile": 75, "eager": 75, "compile": 180}
MIN_TO_START = {"deps": 20, "tests": 60, "profile": 30, "eager": 30, "compile": 75}


class Runner:
    """Runs stage commands under a deadline, logging their output to one file."""

    def __init__(self, budget_s: float, log: Path, slack: float = 1.0) -> None:
        self.slack = slack  # stage limits x slack (the dry run, on a shared CPU)
        self.start = time.monotonic()
        self.deadline = self.start + budget_s
        self.log = log
        self.proc: subprocess.Popen | None = None  # the stage running now

    def kill(self) -> None:
        """End the running stage and everything it started (its own process group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(
        self, name: str, cmd: list[str], limit: float, min_s: float, env: dict[str, str]
    ) -> dict[str, Any]:
        left = self.remaining()
        if left < min_s:
            return {"status": "skipped", "why": f"{left:.0f} s of the budget left, needs {min_s}"}
        timeout = min(limit * self.slack, left)
        with self.log.open("a") as log:
            log.write(f"\n===== {name}: {' '.join(cmd)}\n")
            log.flush()
            begin = time.monotonic()
            # Its own process group (same session), so a timeout also ends the stage's children
            # (pytest's spawned ranks, inductor's compile workers).
            self.proc = proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=os.setpgrp
            )
            try:
                rc = proc.wait(timeout=timeout)
                status = "ok" if rc == 0 else "failed"
            except subprocess.TimeoutExpired:
                self.kill()
                rc, status = proc.wait(), "timeout"
            self.proc = None
            wall = time.monotonic() - begin
            log.write(f"===== {name}: {status} (rc {rc}) in {wall:.1f} s\n")
        result: dict[str, Any] = {"status": status, "rc": rc, "wall_s": round(wall, 1)}
        if status == "timeout":
            result["limit_s"] = round(timeout, 1)
        if status != "ok":
            result["output_tail"] = _tail(self.log, 2500)
        print(f"[gpu_check] {name}: {status} in {wall:.1f} s", flush=True)
        return result


def _tail(path: Path, chars: int) -> str:
    text = path.read_text(errors="replace")
    return text[-chars:]


# ------------------------------------------------------------------------------ dependencies
def declared_requirements() -> list[str]:
    """``[project] dependencies`` of pyproject.toml (tomllib, or a small parser on 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib

        return list(tomllib.loads(text)["project"]["dependencies"])
    except ImportError:
        block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M)
        return re.findall(r'^\s*"([^"]+)"', block.group(1), re.M) if block else []


def requirement_status(requirement: str) -> dict[str, Any]:
    """Whether ``requirement`` is satisfied in this interpreter (``packaging`` when present)."""
    from importlib import metadata

    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip()
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        installed = None
    ok = installed is not None
    if ok:
        try:
            from packaging.requirements import Requirement

            ok = Requirement(requirement).specifier.contains(installed, prereleases=True)
        except ImportError:  # without packaging, presence is all we can check
            pass
    return {"requirement": requirement, "name": name, "installed": installed, "ok": ok}


def deps_stage(args: argparse.Namespace, runner: Runner, env: dict[str, str]) -> dict[str, Any]:
    status = [requirement_status(r) for r in declared_requirements()]
    needed = [s for s in status if s["name"] not in NOT_NEEDED]
    missing = [s["requirement"] for s in needed if not s["ok"]]
    wheels = sorted(p.name for p in args.wheels.glob("*.whl")) if args.wheels.is_dir() else []
    out: dict[str, Any] = {
        "requirements": status,
        "not_needed": {s["name"]: NOT_NEEDED[s["name"]] for s in status if s["name"] in NOT_NEEDED},
        "missing": missing,
        "wheels": wheels,
    }
    py = [sys.executable, "-m", "pip"]
    if args.dry_run:
        out["status"] = "ok"
        out["would_install"] = missing
        return out
    if missing:
        if not wheels:
            out["status"] = "failed"
            out["why"] = (
                f"missing {missing} and no wheels in {args.wheels}: run benchmarks/gpu_wheels.sh "
                "where pip can download, and carry .whl"
            )
            return out
        cmd = [*py, "install", "-q", "--no-index", "--find-links", str(args.wheels), *missing]
        out["install"] = runner.run("deps: pip install", cmd, STAGE_LIMITS["deps"], 10, env)
        if out["install"]["status"] != "ok":  # e.g. a read-only environment: a folder of ours
            target = Path(tempfile.gettempdir()) / "projected_gan_site"
            cmd[-len(missing) :] = ["--target", str(target), *missing]
            out["install_target"] = runner.run("deps: pip --target", cmd, 90, 10, env)
            env["PYTHONPATH"] = os.pathsep.join([str(target), env["PYTHONPATH"]])
            sys.path.insert(0, str(target))
        importlib.invalidate_caches()
    # The checkout itself (console script, metadata); PYTHONPATH covers a failure here.
    cmd = [*py, "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-e", "."]
    out["editable_install"] = runner.run("deps: pip install -e .", cmd, 90, 10, env)
    after = [requirement_status(r) for r in missing]
    out["still_missing"] = [s["requirement"] for s in after if not s["ok"]]
    out["status"] = "ok" if not out["still_missing"] else "failed"
    return out


def probe(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """The interpreter, torch and the device, from a child process (after the installs)."""
    code = (
        "import json, platform, torch\n"
        "d = {'python': platform.python_version(), 'torch': torch.__version__,\n"
        "     'cuda_available': torch.cuda.is_available(), 'cuda': torch.version.cuda}\n"
        "if torch.cuda.is_available():\n"
        "    p = torch.cuda.get_device_properties(0)\n"
        "    d.update(device_name=p.name, capability=f'{p.major}.{p.minor}',\n"
        "             memory_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count)\n"
        "print(json.dumps(d))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        found = {"error": f"{type(exc).__name__}: {exc}"}
    smi = shutil.which("nvidia-smi")
    if smi:
        q = "--query-gpu=name,driver_version,memory.total,clocks.max.sm"
        try:
            done = subprocess.run(
                [smi, q, "--format=csv,noheader"], capture_output=True, text=True, timeout=30
            )
            found["nvidia_smi"] = done.stdout.strip() or done.stderr.strip()
        except subprocess.SubprocessError as exc:
            found["nvidia_smi"] = f"{type(exc).__name__}: {exc}"
    found["cpus"] = os.cpu_count()
    return found


# ------------------------------------------------------------------------------------ stages
def tests_stage(args, runner: Runner, env: dict[str, str], work: Path) -> dict[str, Any]:
    xml, report = work / "cuda_tests.xml", work / "cuda_report.jsonl"
    cmd = [
        sys.executable, "-m", "pytest", "-m", "cuda", "-p", "no:cacheprovider", "-rA", "-v",
        f"--junitxml={xml}", "tests/test_cuda.py",
    ]  # fmt: skip
    env = {**env, "PROJECTED_GAN_CUDA_REPORT": str(report)}
    start = runner.log.stat().st_size
    out = runner.run("cuda tests", cmd, STAGE_LIMITS["tests"], MIN_TO_START["tests"], env)
    if xml.is_file():
        out.update(parse_junit(xml))
    else:  # killed before pytest wrote its XML: the verbose lines of the tests that finished
        with runner.log.open(errors="replace") as f:
            f.seek(start)
            out.update(parse_verbose(f.read()))
    if report.is_file():
        out["report"] = [json.loads(line) for line in report.read_text().splitlines() if line]
    return out


def common_args(args: argparse.Namespace) -> list[str]:
    if args.dry_run:
        return ["--device", "cpu", "--random-data", *TINY]
    return ["--device", "cuda", "--random-data", "--batch", str(args.batch)]


def throughput_stage(args, runner, env, work, preset: str, config: str) -> dict[str, Any]:
    out_json = work / f"throughput_{preset}_{config}.json"
    compiled = config == "compile"
    warmup = args.warmup + (1 if compiled else 0)
    cmd = [
        sys.executable, str(BENCH / "train_throughput.py"), "--preset", preset, *common_args(args),
        "--iters", str(args.iters), "--warmup", str(warmup), "--json", str(out_json),
    ]  # fmt: skip
    for override in CONFIGS[config]:
        cmd += ["--set", override]
    if compiled and args.dry_run:
        cmd += ["--compile-backend", "eager"]  # graph capture only: inductor takes minutes on CPU
    run_env = env
    if compiled:  # a cold compile, as a user's first run: fresh inductor and Triton caches
        cache = work / f"inductor_{preset}"
        run_env = {
            **env,
            "TORCHINDUCTOR_CACHE_DIR": str(cache),
            "TRITON_CACHE_DIR": str(cache / "triton"),
        }
    kind = "compile" if compiled else "eager"
    name = f"throughput {preset} {config}"
    out = runner.run(name, cmd, STAGE_LIMITS[kind], MIN_TO_START[kind], run_env)
    out.update(preset=preset, config=config, overrides=list(CONFIGS[config]))
    if out_json.is_file():
        r = json.loads(out_json.read_text())
        out.update(
            img_per_s=r["img_per_s"],
            s_per_kimg=r["s_per_kimg"],
            peak_mem_bytes=r["peak_mem_bytes"],
            peak_mem_gib=r["peak_mem_bytes"] / 2**30,
            peak_mem_kind=r["peak_mem_kind"],
            startup_s=r["startup_s"],
            compile_warmup_s=r["compile_warmup_s"],
            warmup_s=r["run"]["warmup_s"],
            tflops=r["tflops"],
            peak_fraction=r["peak_fraction"],
            flops_per_img=r["flops_per_img"],
            augment_s_per_img=r["augment_s_per_img"],
            settings=r["settings"],
            iters=r["iters"],
            warmup=r["warmup"],
        )
    return out


def profile_stage(args, runner, env, work) -> dict[str, Any]:
    out_json = work / "profile.json"
    steps = "2" if args.dry_run else "5"
    cmd = [
        sys.executable, str(BENCH / "profile_step.py"), "--preset", PRESETS[0], *common_args(args),
        "--steps", steps, "--torch-profiler", "--json", str(out_json),
    ]  # fmt: skip
    out = runner.run("profile", cmd, STAGE_LIMITS["profile"], MIN_TO_START["profile"], env)
    if out_json.is_file():
        r = json.loads(out_json.read_text())
        out.update(
            {k: r[k] for k in ("step_ms", "groups", "phases", "settings", "top_ops") if k in r}
        )
    return out


# --------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny sizes (also GPU_CHECK_DRY_RUN=1)"
    )
    p.add_argument("--budget", type=float, default=None, help="seconds in all (560; dry run 900)")
    p.add_argument("--out", type=Path, default=None, help="folder for gpu_check.json/.log")
    p.add_argument("--stages", default="deps,tests,throughput,profile")
    p.add_argument(
        "--presets", default=None, help=f"default {','.join(PRESETS)}; dry run: the first"
    )
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=None, help="timed steps (GPU 15, dry run 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (GPU 3, dry run 1)")
    p.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="wheels of missing packages")
    args = p.parse_args(argv)
    args.dry_run = args.dry_run or os.environ.get("GPU_CHECK_DRY_RUN") == "1"
    args.budget = args.budget or (900.0 if args.dry_run else 560.0)
    args.iters = args.iters or (2 if args.dry_run else 15)
    args.warmup = args.warmup or (1 if args.dry_run else 3)
    if args.out is None:
        args.out = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "gpu_check_out"
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    default_presets = PRESETS[:1] if args.dry_run else PRESETS
    args.presets = args.presets.split(",") if args.presets else list(default_presets)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for name, allowed, field in (
        (args.stages, ("deps", "tests", "throughput", "profile"), "--stages"),
        (args.presets, PRESETS, "--presets"),
        (args.configs, tuple(CONFIGS), "--configs"),
    ):
        bad = [x for x in name if x not in allowed]
        if bad:
            p.error(f"{field}: unknown {bad}; expected some of {', '.join(allowed)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "gpu_check.log"
    log.write_text("")
    runner = Runner(args.budget, log, slack=4.0 if args.dry_run else 1.0)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    # Every stage imports this checkout, whether the editable install worked or not.
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}
    env["PROJECTED_GAN_CACHE"] = str(work / "cache")  # decoded data, metric statistics
    result: dict[str, Any] = {
        "mode": "dry-run (CPU, tiny)" if args.dry_run else "gpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(
            ["benchmarks/gpu_check.sh", *(argv if argv is not None else sys.argv[1:])]
        ),
        "budget_s": args.budget,
        "stages": args.stages,
    }

    def save() -> None:
        result["elapsed_s"] = round(time.monotonic() - runner.start, 1)
        (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")

    def stop(signum: int, _frame: Any) -> None:  # e.g. an outer timeout: keep what finished
        runner.kill()
        result["interrupted"] = f"signal {signum}"
        save()
        print(json.dumps(result, indent=2), flush=True)
        sys.exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)

    if "deps" in args.stages:
        result["deps"] = deps_stage(args, runner, env)
    result["machine"] = probe(args, env)
    save()
    if not args.dry_run and not result["machine"].get("cuda_available"):
        result["error"] = "torch sees no CUDA GPU here: nothing to check (--dry-run for the CPU)"
        save()
        print(json.dumps(result, indent=2))
        sys.exit(1)
    if "tests" in args.stages:
        result["cuda_tests"] = tests_stage(args, runner, env, work)
        save()
    rows: list[dict[str, Any]] = []
    result["throughput"] = rows
    if "throughput" in args.stages:
        eager = [c for c in args.configs if c != "compile"]
        # Most wanted first: baseline and default of each preset, then TF32; compile last.
        order = [(p, c) for p in args.presets for c in eager if c in ("baseline", "default")]
        order += [(p, c) for p in args.presets for c in eager if c not in ("baseline", "default")]
        for preset, config in order:
            rows.append(throughput_stage(args, runner, env, work, preset, config))
            result["summary"] = summarise(rows, gpu=not args.dry_run)
            save()
    if "profile" in args.stages:
        result["profile"] = profile_stage(args, runner, env, work)
        save()
    if "throughput" in args.stages and "compile" in args.configs:
        for preset in args.presets:
            rows.append(throughput_stage(args, runner, env, work, preset, "compile"))
            result["summary"] = summarise(rows, gpu=not args.dry_run)
            save()
    machine = result["machine"]
    result["table_md"] = markdown_table(
        rows, f"{machine.get('device_name', 'CPU')}, torch {machine.get('torch')}"
    )
    save()
    shutil.rmtree(work, ignore_errors=True)
    print("[gpu_check] results table (for benchmarks/results/gpu_check.md):")
    print(result["table_md"])
    print("===== gpu_check JSON =====")
    print(json.dumps(result, indent=2))
    print(f"[gpu_check] wrote {args.out / 'gpu_check.json'} and gpu_check.log")
    return result


if __name__ == "__main__":
    main()
