"""Fuzz the file readers: mutated network pickles, checkpoints, export folders, cache sidecars
and dataset.json files, each run through the command that reads it under a memory cap.

Valid seed files are written first (official-layout pickles as tests/official_structure.py
writes them, a checkpoint, an export folder, a dataset with its dataset.json and decoded cache),
then mutated by byte flips, truncation, opcode / JSON splices, size inflation and nesting. Each
mutated file is read by the command line (``convert``, ``export``, ``data``) in a process forked
from this one (torch imported once) with its address space capped, and the outcome counted:
clean exit 2 (one line), loaded (exit 0), traceback (an exception that is not an input error),
timeout, other. Peak RSS is the child's (it includes the ~torch import it inherits).

    PYTHONPATH=. python benchmarks/fuzz_readers.py --count 520 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)  # children are forked: no thread pool may be running

KINDS = ("pickle", "checkpoint", "export", "sidecar", "dataset_json")
SHARE = {"pickle": 0.3, "checkpoint": 0.2, "export": 0.2, "sidecar": 0.15, "dataset_json": 0.15}


# ---------------------------------------------------------------------------------- seeds


def make_seeds(folder: Path) -> dict[str, Any]:
    """Valid files of each kind, small (a 32 px FastGAN-lite)."""
    import numpy as np
    from PIL import Image

    import projected_gan as pg
    from projected_gan.checkpoint import save_checkpoint
    from projected_gan.cli import main
    from projected_gan.configs import spec_form
    from projected_gan.export import export_generator
    from tests import official_structure as official

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    seeds: dict[str, Any] = {"pickle": []}
    for name, c_dim in (("fastgan_lite", 0), ("fastgan", 2)):
        G = pg.create("generators", name, img_resolution=32, z_dim=8, ngf=2, c_dim=c_dim).eval()
        data = official.snapshot(official.fastgan_generator(G), official.fastgan_generator(G), None)
        seeds["pickle"].append(official.dump(data, folder / f"{name}.pkl").read_bytes())
    G = pg.create("generators", "fastgan_lite", img_resolution=32, z_dim=8, ngf=2).eval()
    ckpt = save_checkpoint(
        folder / "run" / "checkpoints" / "snapshot-000001000.safetensors",
        models={"G": G, "G_ema": G},
        meta={
            "spec": {"generator": spec_form(pg.part_config(G)), "data": {"resolution": 32}},
            "nimg": 1000,
            "version": "0",
        },
    )
    seeds["checkpoint"] = ckpt.read_bytes()
    export_generator(G, folder / "export", num_samples=0)
    seeds["export"] = {p.name: p.read_bytes() for p in (folder / "export").iterdir()}
    data_dir = folder / "dataset"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    labels = []
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(data_dir / f"{i}.png")
        labels.append([f"{i}.png", i % 2])
    (data_dir / "dataset.json").write_text(json.dumps({"labels": labels}))
    seeds["dataset_dir"] = data_dir
    seeds["dataset_json"] = (data_dir / "dataset.json").read_bytes()
    cache = folder / "cache"
    argv = ["data", str(data_dir), "--resolution", "8", "--conditional", "--cache-dir", str(cache)]
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        assert main(argv) == 0
    (sidecar,) = cache.rglob("*.json")
    seeds["cache_dir"], seeds["sidecar_name"] = cache, sidecar.relative_to(cache)
    seeds["sidecar"] = sidecar.read_bytes()
    return seeds


# ------------------------------------------------------------------------------ mutations

_PICKLE_SNIPPETS = [
    b"cos\nsystem\n(S'true'\ntR",
    b"\x8c\x08builtins\x8c\x04eval\x93",
    b"b",
    b"h\x00",
    b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"(" * 2000,
    b"]" * 50_000 + b"a" * 49_999,
    b"Q",
    b"\x82\x01",
    b"X\xff\xff\xff\x7f",
    b"J\xff\xff\xff\x7f",
    b"ctorch._utils\n_rebuild_tensor_v2\n",
    b"cdnnlib.util\nEasyDict\n(N}X\x01\x00\x00\x00xK\x01stb",
]
_JSON_SNIPPETS = [b"[[[[", b'{"a":', b"1e999", b'"\\u0000"', b"]]]}", b"-", b"null", b"\xff\xfe"]


def flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= rng.randint(1, 255)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def splice(data: bytes, rng: random.Random, snippets: list[bytes]) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + rng.choice(snippets) + data[at:]


def inflate_pickle(data: bytes, rng: random.Random) -> bytes:
    """A small integer operand (sizes, strides, attributes) made huge."""
    out = bytearray(data)
    spots = [i for i in range(len(out) - 5) if out[i] in b"KMJ"]
    for i in rng.sample(spots, min(len(spots), rng.randint(1, 4))):
        width = {ord("K"): 1, ord("M"): 2, ord("J"): 4}[out[i]]
        out[i + 1 : i + 1 + width] = b"\xff" * width if width < 4 else b"\xff\xff\xff\x7f"
    return bytes(out)


def nest_pickle(data: bytes, rng: random.Random) -> bytes:
    n = rng.choice([100, 10_000, 200_000])
    return splice(data, rng, [b"]" * n + b"a" * (n - 1), b"(" * n + b"l" * n])


def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _nodes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _nodes(v, (*path, i))
    return out


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    value[path[0]] = _replace(value[path[0]], path[1:], new)
    return value


def mutate_json(doc: Any, rng: random.Random, how: str) -> Any:
    """A node of parsed JSON made huge (inflate) or deeply nested (nest), or of another type."""
    path = rng.choice(_nodes(doc))
    node = doc
    for key in path:
        node = node[key]
    if how == "inflate":
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            new: Any = node * 10 ** rng.randint(3, 12) + rng.choice([0, -1])
        else:
            new = rng.choice([10**12, -1, "x" * 100_000, [node] * 1000, {"k": node}, None, True])
    else:
        depth = rng.choice([50, 1000, 100_000])
        new = json.loads("[" * depth + json.dumps(node) + "]" * depth) if depth < 900 else None
        if new is None:  # deeper than json can build: written as text below
            return ("DEEP", path, depth, node)
    return _replace(doc, path, new)


def json_bytes(data: bytes, rng: random.Random, how: str) -> bytes:
    if how in ("flip", "truncate"):
        return flip(data, rng) if how == "flip" else truncate(data, rng)
    if how == "splice":
        return splice(data, rng, _JSON_SNIPPETS)
    doc = json.loads(data)
    result = mutate_json(doc, rng, how)
    if isinstance(result, tuple) and result and result[0] == "DEEP":
        _, path, depth, node = result
        marker = "__DEEP__"
        text = json.dumps(_replace(doc, path, marker))
        return text.replace(
            json.dumps(marker), "[" * depth + json.dumps(node) + "]" * depth
        ).encode()
    return json.dumps(result).encode()


def mutate_checkpoint(data: bytes, rng: random.Random, how: str) -> bytes:
    from safetensors.torch import load, save

    if how in ("flip", "truncate"):
        return flip(data, rng) if how == "flip" else truncate(data, rng)
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    tensors = load(data)
    meta = header["__metadata__"]["meta"]
    if how == "splice":  # tensors renamed, dropped, reshaped
        key = rng.choice(sorted(tensors))
        choice = rng.randrange(3)
        if choice == 0:
            name = rng.choice(["optim.x", "model.G_ema.nope", "model", "extra."])
            tensors[name] = tensors[key].clone()
        elif choice == 1:
            del tensors[key]
        else:
            tensors[key] = torch.zeros(rng.choice([(0,), (3, 3), (1, 1, 1, 1, 1)]))
    else:
        meta = json_bytes(meta.encode(), rng, how).decode()
    return save(tensors, metadata={"format": header["__metadata__"]["format"], "meta": meta})


# -------------------------------------------------------------------------------- running


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def run_case(argv: list[str], log: Path, timeout: float, headroom: int) -> dict[str, Any]:
    """``projected-gan ARGV`` in a forked child with its address space capped."""
    from projected_gan.cli import main

    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            limit = _vm_size() + headroom
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            sys.stderr.write("\nFUZZ-TRACEBACK\n")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 1)
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return {"outcome": "timeout", "seconds": timeout, "rss": usage.ru_maxrss * 1024}
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("projected-gan ")]
    if "FUZZ-TRACEBACK" in text or "Traceback" in text:
        outcome = "traceback"
    elif code == 2 and len(errors) == 1 and "\n" not in errors[0]:
        outcome = "exit2"
    elif code == 0:
        outcome = "loaded"
    else:
        outcome = f"other(exit {code})"
    return {"outcome": outcome, "seconds": seconds, "rss": usage.ru_maxrss * 1024, "log": text}


MUTATIONS = ("flip", "truncate", "splice", "inflate", "nest")


def cases(seeds: dict[str, Any], work: Path, count: int, rng: random.Random):
    """(kind, mutation, argv, size in bytes) for ``count`` mutated files, spread over kinds."""
    plan = [k for k in KINDS for _ in range(round(count * SHARE[k]))]
    plan += [KINDS[0]] * max(0, count - len(plan))
    for i, kind in enumerate(plan[:count]):
        how = rng.choice(MUTATIONS)
        case = work / f"{i:04d}-{kind}-{how}"
        case.mkdir()
        out = str(case / "out")
        if kind == "pickle":
            data = rng.choice(seeds["pickle"])
            data = {
                "flip": flip,
                "truncate": truncate,
                "splice": lambda d, r: splice(d, r, _PICKLE_SNIPPETS),
                "inflate": inflate_pickle,
                "nest": nest_pickle,
            }[how](data, rng)
            path = case / "snapshot.pkl"
            path.write_bytes(data)
            yield kind, how, ["convert", str(path), out], len(data)
        elif kind == "checkpoint":
            path = case / "snapshot-000001000.safetensors"
            path.write_bytes(mutate_checkpoint(seeds["checkpoint"], rng, how))
            yield kind, how, ["export", str(path), out], path.stat().st_size
        elif kind == "export":
            folder = case / "export"
            folder.mkdir()
            for name, data in seeds["export"].items():
                (folder / name).write_bytes(data)
            if rng.random() < 0.7 or how in ("inflate", "nest"):
                target = folder / "config.json"
                target.write_bytes(json_bytes(target.read_bytes(), rng, how))
            else:
                target = folder / "model.safetensors"
                target.write_bytes(mutate_checkpoint(target.read_bytes(), rng, "flip"))
            size = sum(p.stat().st_size for p in folder.iterdir())
            yield kind, how, ["export", str(folder), out], size
        else:
            data_dir, cache = case / "dataset", case / "cache"
            shutil.copytree(seeds["dataset_dir"], data_dir)
            shutil.copytree(seeds["cache_dir"], cache)
            if kind == "sidecar":
                target = cache / seeds["sidecar_name"]
            else:
                target = data_dir / "dataset.json"
            target.write_bytes(json_bytes(target.read_bytes(), rng, how))
            argv = ["data", str(data_dir), "--resolution", "8", "--conditional"]
            yield kind, how, [*argv, "--cache-dir", str(cache)], target.stat().st_size


def table(rows: list[dict[str, Any]]) -> str:
    head = "| kind | tried | clean exit 2 | loaded (exit 0) | tracebacks | timeouts | other |"
    head += " peak RSS (MiB) | slowest (s) |\n|" + " --- |" * 9
    lines = [head]
    for kind in (*KINDS, "all"):
        sel = [r for r in rows if kind in ("all", r["kind"])]
        if not sel:
            continue
        n = {o: sum(r["outcome"] == o for r in sel) for o in ("exit2", "loaded", "traceback")}
        timeouts = sum(r["outcome"] == "timeout" for r in sel)
        other = len(sel) - sum(n.values()) - timeouts
        rss = max(r["rss"] for r in sel) / 2**20
        slow = max(sel, key=lambda r: r["seconds"])
        lines.append(
            f"| {kind} | {len(sel)} | {n['exit2']} | {n['loaded']} | {n['traceback']} | "
            f"{timeouts} | {other} | {rss:.0f} | {slow['seconds']:.1f} ({slow['mutation']}) |"
        )
    return "\n".join(lines)


def fuzz(
    count: int,
    seed: int,
    timeout: float = 60.0,
    headroom: int = 3 << 30,
    work: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run ``count`` mutated files; one dict per file (kind, mutation, outcome, seconds, rss)."""
    rng = random.Random(seed)
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="fuzz-readers-")) if own else work
    try:
        seeds = make_seeds(work / "seeds")
        rows = []
        for kind, how, argv, size in cases(seeds, work, count, rng):
            result = run_case(argv, work / "last.log", timeout, headroom)
            rows.append({"kind": kind, "mutation": how, "bytes": size, "argv": argv, **result})
            if progress and result["outcome"] not in ("exit2", "loaded"):
                progress(
                    f"{result['outcome']}: {kind}/{how} {argv}\n{result.get('log', '')[-2000:]}"
                )
        return rows
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=520, help="mutated files in all (default 520)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per file")
    p.add_argument("--json", help="write every row here")
    args = p.parse_args(argv)
    start = time.perf_counter()
    rows = fuzz(args.count, args.seed, args.timeout, progress=lambda s: print(s, flush=True))
    print(table(rows))
    small = [r for r in rows if r["bytes"] < 2**20]
    print(
        f"files under 1 MB: {len(small)}, over 1 GiB peak RSS: "
        f"{sum(r['rss'] > 2**30 for r in small)}; {time.perf_counter() - start:.0f} s in all"
    )
    if args.json:
        Path(args.json).write_text(json.dumps([{k: v for k, v in r.items() if k != "log"}
                                               for r in rows], indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
