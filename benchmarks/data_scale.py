"""Datasets at scale: the decoded cache's build, its opening by 1 and 2 processes, batch speed.

    python benchmarks/data_scale.py --sizes 1000,8000,32000 --resolution 256 --json data_scale.json
    python benchmarks/data_scale.py --sizes 200 --resolution 32 --batches 3      # smoke test

For each N: writes a zip of N synthetic JPEGs at the resolution (smooth colour fields with noise,
~20-40 kB each at 256 px), then in fresh processes

- **build**: ``load_image_dataset`` decodes it into the cache; seconds and the peak RSS (VmHWM);
- **open x P** (P = 1, then 2 at the same time): seconds to open the built cache, then ``--batches``
  random batches of ``--batch`` through ``InfiniteBatches``' host-gather path (img/s: what a GPU
  run with more than 2 GiB of data does on the host; no flips), then, while all P processes
  are alive, the memory of each from ``/proc/self/smaps_rollup`` (``Anonymous``, ``Private_*``,
  ``Shared_*``, ``Rss``) and of the cache file's own mapping from ``/proc/self/smaps``.

``--decode-rate`` adds the decode rate of one thread (one core) at 256 and 1024 px (JPEG sources at
the output size, as ``dataset_tool.py`` writes them), and the img/s of a streaming dataset with 1
and 2 ``DataLoader`` workers at ``--resolution``. Disk: the zips plus the caches, about
``sum(N) * (3 R^2 + 30 kB)``: ~8.4 GB for 1k + 8k + 32k at 256 px (``--workdir``, removed at the
end unless ``--keep``). Prints one JSON object (``--json`` writes it too).

``--child open`` is the per-process part (also used by ``tests/test_data_cache.py``): it prints
one JSON line when opened and read, waits for a line on stdin, prints its memory and exits.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------- memory (Linux)


def _kb_fields(lines: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def rollup() -> dict[str, int]:
    """This process's ``/proc/self/smaps_rollup`` in bytes (Rss, Anonymous, Shared_Clean, ...)."""
    with open("/proc/self/smaps_rollup") as f:
        return _kb_fields(f.read().splitlines())


def mapping_of(path: Path) -> dict[str, int]:
    """The ``/proc/self/smaps`` fields of the mappings of ``path``, summed (bytes)."""
    target, total, inside = str(Path(path).resolve()), {}, False
    with open("/proc/self/smaps") as f:
        block: list[str] = []
        for line in [*f.read().splitlines(), "00000000-00000000 ---p 0 0 0"]:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                if inside:
                    for k, v in _kb_fields(block).items():
                        total[k] = total.get(k, 0) + v
                inside = len(head) >= 6 and " ".join(head[5:]) == target
                block = []
            else:
                block.append(line)
    return total


def status(field: str) -> int:
    """A ``/proc/self/status`` size field (``VmHWM``, ``VmRSS``) in bytes."""
    with open("/proc/self/status") as f:
        return _kb_fields([x for x in f.read().splitlines() if x.startswith(field + ":")])[field]


def memory_summary(cache_file: Path | None) -> dict[str, int]:
    r = rollup()
    out = {
        "rss": r.get("Rss", 0),
        "anonymous": r.get("Anonymous", 0),
        "private": r.get("Private_Clean", 0) + r.get("Private_Dirty", 0),
        "shared": r.get("Shared_Clean", 0) + r.get("Shared_Dirty", 0),
    }
    if cache_file is not None:
        m = mapping_of(cache_file)
        out["file_rss"] = m.get("Rss", 0)
        out["file_shared"] = m.get("Shared_Clean", 0) + m.get("Shared_Dirty", 0)
        out["file_private"] = m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
    return out


# ----------------------------------------------------------------------------------- children


def child_open(args: argparse.Namespace) -> None:
    """Open the built cache, read (every image once with ``--read-all``, then ``--batches``
    batches), print one JSON line, wait for stdin, print the memory, exit."""
    import torch

    from projected_gan.data import InfiniteBatches, load_image_dataset

    torch.set_num_threads(1)
    torch.randperm(8).index_select(0, torch.arange(2))  # warm the allocator and thread pools
    before = memory_summary(None)
    start = time.perf_counter()
    ds = load_image_dataset(args.data, args.resolution, cache_dir=args.cache_dir, workers=1)
    opened = time.perf_counter() - start
    checksum = 0
    if args.read_all:  # every byte once, through views: no copy of the images is made
        for first in range(0, len(ds), 256):
            checksum ^= int(ds.images[first : first + 256].view(torch.int64).sum())
    # The host-gather path, as with a GPU and data over 2 GiB (flips would run on the GPU).
    batches = InfiniteBatches(ds, args.batch, seed=os.getpid(), gpu_cache_bytes=0)
    next(batches)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(batches)
    seconds = time.perf_counter() - start
    after = memory_summary(ds.cache_file)
    record = {
        "pid": os.getpid(),
        "images": len(ds),
        "mapped": bool(getattr(ds, "mapped", False)),
        "cache_file": str(ds.cache_file),
        "open_s": opened,
        "batch_img_per_s": args.batches * args.batch / max(seconds, 1e-9),
        "before": before,
        "after_reading": after,
        "checksum": checksum,
    }
    print(json.dumps(record), flush=True)
    sys.stdin.readline()  # every process of the group has read its data: measure together
    print(json.dumps(memory_summary(ds.cache_file)), flush=True)


def child_build(args: argparse.Namespace) -> None:
    from projected_gan.data import load_image_dataset

    start = time.perf_counter()
    ds = load_image_dataset(args.data, args.resolution, cache_dir=args.cache_dir)
    seconds = time.perf_counter() - start
    size = Path(ds.cache_file).stat().st_size
    print(json.dumps({"seconds": seconds, "peak_rss": status("VmHWM"), "cache_bytes": size}))


def child_decode_rate(args: argparse.Namespace) -> None:
    """Images per second of one decoding thread (one core)."""
    from projected_gan.data.decode import decode_member
    from projected_gan.data.files import open_source

    source = open_source(Path(args.data))
    names = [m.name for m in source.members]
    decode_member(source, names[0], args.resolution, 3)  # warm up
    start = time.perf_counter()
    for name in names:
        decode_member(source, name, args.resolution, 3)
    print(json.dumps({"img_per_s": len(names) / (time.perf_counter() - start)}))


def child_stream(args: argparse.Namespace) -> None:
    from projected_gan.data import InfiniteBatches, load_image_dataset

    ds = load_image_dataset(args.data, args.resolution, storage="stream", workers=args.workers)
    batches = InfiniteBatches(ds, args.batch, mirror=True)
    for _ in range(args.workers * 2):  # workers started, first batches in flight
        next(batches)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(batches)
    seconds = time.perf_counter() - start
    print(json.dumps({"img_per_s": args.batches * args.batch / seconds}))
    batches.close()


# ------------------------------------------------------------------------------------- parent


def make_zip(path: Path, n: int, resolution: int, seed: int = 0) -> int:
    """``n`` synthetic JPEGs (q 90) at ``resolution`` in a stored zip; returns its bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, resolution, dtype=np.float32)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            a, b, c = rng.uniform(0, 255, (3, 3, 1, 1)).astype(np.float32)
            field = a + (b - a) * ramp[None, :, None] + (c - a) * ramp[None, None, :] * 0.5
            field += rng.normal(0, 12, (3, resolution, resolution)).astype(np.float32)
            image = np.clip(field, 0, 255).astype(np.uint8).transpose(1, 2, 0)
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, "JPEG", quality=90)
            zf.writestr(f"{i // 1000:05d}/img{i:08d}.jpg", buf.getvalue())
    return path.stat().st_size


def _run_child(mode: str, args: argparse.Namespace, data: Path, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--data", str(data), *_common(args), *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _common(args: argparse.Namespace) -> list[str]:
    return [
        f"--resolution={args.resolution}",
        f"--batch={args.batch}",
        f"--batches={args.batches}",
        f"--cache-dir={args.cache_dir}",
    ]


def open_group(args: argparse.Namespace, data: Path, processes: int, *extra: str) -> list[dict]:
    """``processes`` children opening the cache at the same time; their records and memory."""
    cmd = [sys.executable, __file__, "--child", "open", "--data", str(data), *_common(args)]
    procs = [
        subprocess.Popen([*cmd, *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    records = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p, record in zip(procs, records):
        record["together"] = json.loads(p.stdout.readline())
        p.wait(timeout=60)
        p.stdin.close()
        p.stdout.close()
    return records


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="1000,8000,32000", help="comma list of N")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=20, help="timed batches per process")
    p.add_argument("--workdir", type=Path, help="zips and caches (default: a temp folder)")
    p.add_argument("--keep", action="store_true", help="keep --workdir's files")
    p.add_argument("--decode-rate", action="store_true", help="also decode and stream rates")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--child", choices=["open", "build", "decode", "stream"], help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--read-all", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        {"open": child_open, "build": child_build, "decode": child_decode_rate}.get(
            args.child, child_stream
        )(args)
        return {}

    work = args.workdir or Path(tempfile.mkdtemp(prefix="data_scale-"))
    work.mkdir(parents=True, exist_ok=True)
    args.cache_dir = work / "cache"
    result: dict[str, Any] = {
        "resolution": args.resolution,
        "batch": args.batch,
        "batches": args.batches,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "sizes": [],
    }
    made: list[Path] = [args.cache_dir]
    try:
        for n in [int(s) for s in args.sizes.split(",")]:
            data = work / f"synthetic-{n}-{args.resolution}.zip"
            made.append(data)
            zip_bytes = make_zip(data, n, args.resolution)
            entry: dict[str, Any] = {
                "n": n,
                "decoded_bytes": n * 3 * args.resolution**2,
                "zip_bytes": zip_bytes,
                "build": _run_child("build", args, data),
            }
            for processes in (1, 2):
                entry[f"open_{processes}"] = open_group(args, data, processes)
            result["sizes"].append(entry)
            print(json.dumps(entry), file=sys.stderr, flush=True)
        if args.decode_rate:
            result["decode_rate_per_core"] = {}
            for res in (256, 1024):
                data = work / f"rate-{res}.zip"
                made.append(data)
                make_zip(data, 64 if res == 1024 else 256, res, seed=1)
                rate_args = argparse.Namespace(**{**vars(args), "resolution": res})
                result["decode_rate_per_core"][str(res)] = _run_child("decode", rate_args, data)
            data = work / f"synthetic-stream-{args.resolution}.zip"
            made.append(data)
            make_zip(data, 2000, args.resolution, seed=2)
            result["stream_img_per_s"] = {
                str(w): _run_child("stream", args, data, f"--workers={w}")["img_per_s"]
                for w in (1, 2)
            }
    finally:
        if not args.keep:
            for path in made:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(True)
            if args.workdir is None:
                shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json:
        from projected_gan.atomic import atomic_write_json

        atomic_write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
