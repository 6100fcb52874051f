"""Training throughput of ``Trainer.step()`` (one G step + one D step) for a preset.

    python benchmarks/train_throughput.py --preset minimal_cpu --device cpu --iters 5 --baseline
    python benchmarks/train_throughput.py --preset fastgan_lite_256 --device cuda --iters 50 \
        --random-data --baseline --json fastgan_lite_256.json

Prints img/s, s/kimg, peak memory, achieved TFLOP/s and its fraction of a matmul peak measured
on the same device (bf16 on CUDA, fp32 on CPU). FLOPs are counted once, over one eager step, with
``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts 2). ``--baseline`` then builds
our own fp32 eager configuration (precision=fp32, tf32=false, channels_last=false, compile=false)
in the same process and prints the speed-up against it.

Timing: on CUDA one pair of events brackets the timed steps and the host synchronises only at the
two ends; on CPU every step is also timed on its own (free there) to show the spread.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import projected_gan
from projected_gan.atomic import atomic_write_json
from projected_gan.data import ImageDataset
from projected_gan.spec import ExperimentSpec
from projected_gan.training import Trainer, assemble

# Our fp32 eager reference: every speed switch off.
BASELINE_OVERRIDES = (
    "train.precision=fp32",
    "train.tf32=false",
    "train.channels_last=false",
    "train.compile=false",
)
RANDOM_IMAGES = 128  # images in the --random-data pool (more when one batch is larger)
_COMPILE_BACKEND = "inductor"  # torch.compile's default; --compile-backend changes it


# ------------------------------------------------------------------------------- clocks, memory
def process_age_s() -> float:
    """Seconds since this process started (Linux ``/proc``; else since this module loaded)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rpartition(")")[2].split()[19])  # field 22: starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _MODULE_LOADED


_MODULE_LOADED = time.perf_counter()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> str:
    """Start a new peak; returns how the peak will be measured."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda max_memory_allocated (timed steps)"
    try:  # Linux: writing 5 resets VmHWM, the peak resident set size
        Path("/proc/self/clear_refs").write_text("5")
        if _vm_hwm_bytes() is not None:
            return "cpu: process peak RSS over the timed steps (VmHWM, reset before them)"
    except OSError:
        pass
    return "cpu: process peak RSS since process start (resource.getrusage ru_maxrss)"


def peak_memory_bytes(device: torch.device, kind: str) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if "VmHWM" in kind:
        value = _vm_hwm_bytes()
        if value is not None:
            return value
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux


def _vm_hwm_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# ----------------------------------------------------------------------------------- building
@contextlib.contextmanager
def random_dataset(spec: ExperimentSpec) -> Iterator[None]:
    """Make ``build_from_spec`` train on random uint8 images instead of reading image files."""
    res = spec.data.resolution
    gen = torch.Generator().manual_seed(spec.train.seed)
    n = max(RANDOM_IMAGES, spec.train.batch)  # InfiniteBatches needs one full batch per epoch
    images = torch.randint(0, 256, (n, 3, res, res), dtype=torch.uint8, generator=gen)
    labels = None
    if spec.data.conditional:
        labels = torch.arange(n) % 10  # ten classes, balanced
    dataset = ImageDataset(images, labels, source="<random>")
    original = assemble.load_spec_dataset
    assemble.load_spec_dataset = lambda _spec: dataset
    try:
        yield
    finally:
        assemble.load_spec_dataset = original


def make_spec(args: argparse.Namespace, extra: tuple[str, ...] = ()) -> ExperimentSpec:
    overrides = [f"train.device={args.device}"]
    if args.batch is not None:
        overrides.append(f"train.batch={args.batch}")
    if args.resolution is not None:
        overrides.append(f"data.resolution={args.resolution}")
    overrides += [*args.set, *extra]
    return ExperimentSpec.load(preset=args.preset, overrides=overrides)


def build_trainer(spec: ExperimentSpec, random_data: bool) -> Trainer:
    with random_dataset(spec) if random_data else contextlib.nullcontext():
        return projected_gan.build_from_spec(spec)


# ---------------------------------------------------------------------------------- measuring
def count_step_flops(trainer: Trainer) -> int:
    """FLOPs of one training step, counted on the eager modules (the counter sees each aten op)."""
    core = trainer.core
    compiled = core.g_forward, core.d_forward
    core.g_forward, core.d_forward = core.G, core.D
    try:
        with FlopCounterMode(display=False) as counter:
            trainer.step()
    finally:
        core.g_forward, core.d_forward = compiled
    return int(counter.get_total_flops())


def matmul_peak_tflops(device: torch.device) -> tuple[float, str]:
    """Best measured throughput of a large square matmul: bf16 on CUDA, fp32 on CPU."""
    if device.type == "cuda":
        n, dtype, reps, rounds = 8192, torch.bfloat16, 20, 5
    else:
        n, dtype, reps, rounds = 1024, torch.float32, 4, 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up (cuBLAS handle, heuristics)
    best = float("inf")
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        sync(device)
        best = min(best, (time.perf_counter() - start) / reps)
    label = f"{str(dtype).removeprefix('torch.')} matmul {n}x{n}"
    return 2 * n**3 / best / 1e12, label


def measure(
    trainer: Trainer,
    iters: int,
    warmup: int,
    t_start: float | None = None,
    sync_debug: bool = False,
) -> dict[str, Any]:
    """Warm-up steps, then ``iters`` timed steps; startup is measured when ``t_start`` is given.

    ``t_start`` is the process age at which startup began (normally 0: process start).
    ``sync_debug`` (CUDA) warns at every host-device synchronisation inside the timed steps.
    """
    device = trainer.device
    compiled = trainer.spec.train.compile
    steps: list[float] = []

    def one_step() -> float:
        begin = time.perf_counter()
        trainer.step()
        sync(device)  # warm-up only: compile and autotuning finish inside the step they start in
        return time.perf_counter() - begin

    warm_begin = time.perf_counter()
    first_step_s = one_step()
    first_done_age = process_age_s()
    warm_times = [first_step_s] + [one_step() for _ in range(warmup - 1)]
    warmup_s = time.perf_counter() - warm_begin

    mem_kind = reset_peak_memory(device)
    if device.type == "cuda":
        start_ev = torch.cuda.Event(enable_timing=True)
        end_ev = torch.cuda.Event(enable_timing=True)
        sync(device)
        begin = time.perf_counter()
        start_ev.record()
        if sync_debug:
            torch.cuda.set_sync_debug_mode("warn")
        for _ in range(iters):
            trainer.step()
        torch.cuda.set_sync_debug_mode("default")
        end_ev.record()
        sync(device)
        wall_s = time.perf_counter() - begin
        timed_s = start_ev.elapsed_time(end_ev) / 1e3
    else:
        begin = time.perf_counter()
        for _ in range(iters):
            t = time.perf_counter()
            trainer.step()
            steps.append(time.perf_counter() - t)
        timed_s = wall_s = time.perf_counter() - begin
    peak = peak_memory_bytes(device, mem_kind)

    step_s = timed_s / iters
    imgs = iters * trainer.spec.train.batch
    result: dict[str, Any] = {
        "img_per_s": imgs / timed_s,
        "s_per_kimg": timed_s / imgs * 1000,
        "step_s": step_s,
        "timed_s": timed_s,
        "timed_wall_s": wall_s,
        "peak_mem_bytes": peak,
        "peak_mem_kind": mem_kind,
        "warmup_s": warmup_s,
        "warmup_step_s": warm_times,
        # Compilation is the warm-up time beyond what the same steps take once warm.
        "compile_warmup_s": max(warmup_s - warmup * step_s, 0.0) if compiled else None,
    }
    if device.type == "cuda":
        result["peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved(device))
    if steps:
        result["step_s_each"] = steps
        result["step_s_median"] = statistics.median(steps)
        result["step_s_min"] = min(steps)
    if t_start is not None:
        compile_in_first = max(first_step_s - step_s, 0.0) if compiled else 0.0
        result["startup_s"] = first_done_age - t_start - compile_in_first
    return result


def augment_cost(trainer: Trainer, repeats: int = 5) -> float | None:
    """Seconds per image of D's augmentation alone, on one training batch (best of ``repeats``).

    In a step it runs three times per image (G step, D step fakes and reals), plus a backward in
    the G step; this is one forward.
    """
    augment = getattr(trainer.D, "augment", None)
    if augment is None:
        return None
    device, batch = trainer.device, trainer.batch
    res = trainer.spec.data.resolution
    x = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    x = x.contiguous(memory_format=trainer.core.memory_format)
    best = float("inf")
    with torch.no_grad(), trainer.core.autocast():
        for _ in range(repeats + 1):  # the first is a warm-up
            sync(device)
            begin = time.perf_counter()
            augment(x)
            sync(device)
            best = min(best, time.perf_counter() - begin)
    return best / batch


def settings(trainer: Trainer, spec: ExperimentSpec) -> dict[str, Any]:
    t = spec.train
    return {
        "batch": t.batch,
        "resolution": spec.data.resolution,
        "generator": spec.generator.name,
        "precision": trainer.core.precision.mode,
        "tf32": trainer.core.precision.tf32,
        "channels_last": t.channels_last,
        "compile": t.compile,
        "compile_backend": _COMPILE_BACKEND if t.compile else None,
        "fused_adam": True,
    }


def release(device: torch.device, compiled: bool) -> None:
    """After the caller dropped its trainer: free its memory and compiled graphs, so the next
    trainer is measured alone."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if compiled:
        torch._dynamo.reset()


# ----------------------------------------------------------------------------------- printing
def _mem(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def describe(name: str, r: dict[str, Any]) -> str:
    lines = [
        f"{name}: {r['img_per_s']:.2f} img/s, {r['s_per_kimg']:.2f} s/kimg, "
        f"{r['step_s'] * 1e3:.1f} ms/step",
        f"  peak memory {_mem(r['peak_mem_bytes'])} ({r['peak_mem_kind']})",
        f"  warm-up {r['warmup_s']:.2f} s",
    ]
    if r.get("compile_warmup_s") is not None:
        lines[-1] += f" (compile warm-up ~{r['compile_warmup_s']:.1f} s)"
    if "step_s_median" in r:
        lines.append(
            f"  per step: median {r['step_s_median'] * 1e3:.1f} ms, "
            f"min {r['step_s_min'] * 1e3:.1f} ms"
        )
    if "startup_s" in r:
        lines.append(
            f"  startup (process start -> first step done, no compile) {r['startup_s']:.2f} s"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="minimal_cpu", help="a shipped preset (default minimal_cpu)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--iters", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=None, help="default: 1 on CPU, 10 on CUDA")
    p.add_argument("--batch", type=int, default=None, help="overrides train.batch")
    p.add_argument("--resolution", type=int, default=None, help="overrides data.resolution")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="spec override (repeat)"
    )
    p.add_argument("--baseline", action="store_true", help="also time our fp32 eager config")
    p.add_argument("--random-data", action="store_true", help="random uint8 images, no files")
    p.add_argument(
        "--sync-debug", action="store_true", help="CUDA: warn at each host sync in timed steps"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's own)"
    )
    p.add_argument(
        "--compile-backend",
        default=None,
        metavar="NAME",
        help="torch.compile backend for train.compile=true (default: torch's, inductor); "
        "'eager' only captures graphs, e.g. for a quick CPU check of the compiled path",
    )
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    args = p.parse_args(argv)
    if args.iters < 1:
        p.error(f"--iters must be >= 1, got {args.iters}")
    if args.warmup is None:
        args.warmup = 10 if args.device.startswith("cuda") else 1
    if args.warmup < 1:
        p.error(f"--warmup must be >= 1 (the first step is never timed), got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    return args


def use_compile_backend(backend: str) -> None:
    """Make every later ``torch.compile(...)`` call (the Trainer's too) use ``backend``."""
    global _COMPILE_BACKEND
    _COMPILE_BACKEND = backend
    compile_fn = torch.compile

    def compile_with_backend(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("backend", backend)
        return compile_fn(*args, **kwargs)

    torch.compile = compile_with_backend


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.compile_backend is not None:
        use_compile_backend(args.compile_backend)
    if args.threads is not None:
        # On a shared CPU, fewer threads than cores avoids OpenMP workers waiting on a busy core.
        torch.set_num_threads(args.threads)
    spec = make_spec(args)
    trainer = build_trainer(spec, args.random_data)
    device = trainer.device
    build_age = process_age_s()
    run = measure(trainer, args.iters, args.warmup, t_start=0.0, sync_debug=args.sync_debug)
    run["build_done_s"] = build_age
    # Counted after timing so the counter's overhead never lands in a timed or startup figure.
    flops_per_img = count_step_flops(trainer) / spec.train.batch
    aug_s_per_img = augment_cost(trainer)
    run_settings = settings(trainer, spec)
    del trainer
    release(device, spec.train.compile)

    peak_tflops, peak_label = matmul_peak_tflops(device)
    tflops = flops_per_img * run["img_per_s"] / 1e12
    result: dict[str, Any] = {
        "preset": args.preset,
        "img_per_s": run["img_per_s"],
        "baseline_img_per_s": None,
        "speedup": None,
        "s_per_kimg": run["s_per_kimg"],
        "peak_mem_bytes": run["peak_mem_bytes"],
        "peak_mem_kind": run["peak_mem_kind"],
        "startup_s": run["startup_s"],
        "compile_warmup_s": run["compile_warmup_s"],
        "flops_per_img": flops_per_img,
        "augment_s_per_img": aug_s_per_img,
        "tflops": tflops,
        "matmul_peak_tflops": peak_tflops,
        "matmul_peak": peak_label,
        "peak_fraction": tflops / peak_tflops,
        "settings": run_settings,
        "iters": args.iters,
        "warmup": args.warmup,
        "random_data": args.random_data,
        "overrides": args.set,
        "run": run,
        "device": str(device),
        "device_name": _device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
    }

    print(
        f"train throughput: {args.preset} on {result['device_name']} ({device}), torch "
        f"{torch.__version__}, {run_settings}"
    )
    print(describe("config", run))
    print(
        f"  {flops_per_img / 1e9:.2f} GFLOP/img -> {tflops:.3f} TFLOP/s = "
        f"{100 * result['peak_fraction']:.1f}% of a measured {peak_label} "
        f"({peak_tflops:.2f} TFLOP/s)"
    )

    if aug_s_per_img is not None:
        share = 3 * aug_s_per_img * run["img_per_s"]
        print(
            f"  DiffAugment: {aug_s_per_img * 1e3:.3f} ms/img per forward "
            f"(x3 per step: {100 * share:.1f}% of the step time)"
        )

    if args.baseline:
        base_spec = make_spec(args, BASELINE_OVERRIDES)
        base = build_trainer(base_spec, args.random_data)
        base_run = measure(base, args.iters, args.warmup, t_start=None)
        result["baseline_settings"] = settings(base, base_spec)
        del base
        release(device, False)
        result["baseline"] = base_run
        result["baseline_img_per_s"] = base_run["img_per_s"]
        result["baseline_peak_mem_bytes"] = base_run["peak_mem_bytes"]
        result["speedup"] = run["img_per_s"] / base_run["img_per_s"]
        print(describe("baseline (fp32 eager)", base_run))
        print(f"speed-up over our fp32 eager baseline: {result['speedup']:.2f}x")
        if "step_s_min" in run:  # CPU: fastest steps, less sensitive to other jobs on the machine
            result["speedup_best_step"] = base_run["step_s_min"] / run["step_s_min"]
            print(f"  (fastest step against fastest step: {result['speedup_best_step']:.2f}x)")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.partition(':')[2].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


if __name__ == "__main__":
    main()
