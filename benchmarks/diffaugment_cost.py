"""What DiffAugment costs per image, against a plain copy of the batch.

    python benchmarks/diffaugment_cost.py                       # CPU, 256 px, batch 16
    python benchmarks/diffaugment_cost.py --device cuda --batch 64 --backward

Prints milliseconds per batch and per image for the fused policy, for each op run on its own, and
the ratio against ``x.clone()`` (one read and one write of the batch). Asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from projected_gan.augmentations import DiffAugment, parse_policy


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, iters: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--policy", default="color,translation,cutout")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--backward", action="store_true", help="also time forward + backward")
    p.add_argument("--iters", type=int, default=20)
    args = p.parse_args(argv)

    device = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    shape = (args.batch, 3, args.resolution, args.resolution)
    x = torch.rand(shape, device=device, dtype=getattr(torch, args.dtype)) * 2 - 1
    x = x.contiguous(memory_format=fmt)
    gen = torch.Generator(device=device).manual_seed(0)
    aug = DiffAugment(args.policy)

    print(
        f"DiffAugment cost: device={device} {tuple(shape)} {args.dtype} "
        f"{'channels_last' if args.channels_last else 'NCHW'}, median of {args.iters}"
    )
    copy_ms = time_ms(lambda: x.clone(), device, args.iters)
    print(f"  {'x.clone()':<44} {copy_ms:8.3f} ms/batch {copy_ms / args.batch:8.4f} ms/img  1.00x")

    def report(label: str, fn: Callable[[], object]) -> None:
        ms = time_ms(fn, device, args.iters)
        per_img = ms / args.batch
        print(f"  {label:<44} {ms:8.3f} ms/batch {per_img:8.4f} ms/img {ms / copy_ms:5.2f}x")

    with torch.no_grad():
        report(f"policy {aug.policy!r} (fused)", lambda: aug(x, generator=gen))
        ops = parse_policy(args.policy)
        report("same ops one at a time", lambda: _one_by_one(ops, x, gen))
        for op in ops:
            report(f"  {type(op).__name__} alone", lambda op=op: op(x, generator=gen))

    if args.backward:
        xg = x.detach().requires_grad_(True)

        def fwd_bwd() -> None:
            aug(xg, generator=gen).sum().backward()
            xg.grad = None

        report("policy forward + backward", fwd_bwd)


def _one_by_one(ops: list[torch.nn.Module], x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    for op in ops:
        x = op(x, generator=gen)
    return x


if __name__ == "__main__":
    main()
