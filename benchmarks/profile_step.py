"""Where one training step spends its time: G, DiffAugment, the frozen projector, the heads, Adam.

    python benchmarks/profile_step.py --preset fastgan_lite_256 --device cuda --batch 64 \
        --random-data --steps 5 --json profile.json
    python benchmarks/profile_step.py --preset minimal_cpu --device cpu --resolution 32 --batch 4

Real ``Trainer.step()`` calls are split into phases by hooks on the public modules, not by a
copy of the loop: forward pre/post hooks on ``G``, ``D.augment``, ``D.projector.feature_network``,
``D.projector.head`` and ``D.discriminator`` (the heads); for the backward, a hook on each
module's outputs' gradients (a module's backward starts once the gradients of all its outputs
have arrived) and post-accumulate-grad hooks on G's and the heads' parameters (their backward
ends with the last gradient); global optimiser step hooks for Adam. Each boundary records a CUDA
event on the current stream (on CPU a clock reading), so a phase's time is the device time
between its boundaries: kernels run in issue order on one stream, so each lands in the phase that
launched it. Whatever lies between phases (the loss, the data batch, the non-finite check, the
EMA update, ``torch.randn``) is ``other``. Host time per phase is reported too: a phase whose
host time exceeds its device time is bound by Python and kernel launches.

``--torch-profiler`` also runs ``torch.profiler`` over one more step and prints its top
operators (with ``--trace DIR``, a Chrome trace there too). ``train.compile`` is forced off:
hooks do not see inside compiled graphs.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from projected_gan.atomic import atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt  # (same folder) make_spec, build_trainer, sync, settings

# Phase labels -> the group the summary reports them under.
GROUPS = {
    "G": "G",
    "DiffAugment": "DiffAugment",
    "feature network": "projector",
    "projection": "projector",
    "heads": "heads",
    "optimiser": "optimiser",
    "other": "other",
}


class Timeline:
    """Boundaries of labelled phases, as CUDA events (or clock readings on CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.recording = False
        self.marks: list[tuple[str, Any, float]] = []

    def enter(self, label: str) -> None:
        """From now on, work belongs to ``label`` (until the next call)."""
        if not self.recording:
            return
        event = None
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
        self.marks.append((label, event, time.perf_counter()))

    def totals(self) -> tuple[dict[str, float], dict[str, float]]:
        """Seconds per label: (device time, host time), summed over all recorded phases."""
        device: dict[str, float] = defaultdict(float)
        host: dict[str, float] = defaultdict(float)
        for (label, ev, t), (_, ev_next, t_next) in zip(self.marks, self.marks[1:]):
            host[label] += t_next - t
            device[label] += ev.elapsed_time(ev_next) / 1e3 if self.cuda else t_next - t
        return dict(device), dict(host)


def _tensors(out: Any) -> list[torch.Tensor]:
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


class PhaseHooks:
    """Attach the timeline's boundaries to one module (see the module docstring)."""

    def __init__(self, timeline: Timeline, module: nn.Module, label: str) -> None:
        self.timeline, self.label = timeline, label
        self.params = [p for p in module.parameters() if p.requires_grad]  # G's, or the heads'
        self._params_left = 0
        self.handles = [
            module.register_forward_pre_hook(self._pre),
            module.register_forward_hook(self._post),
            *(p.register_post_accumulate_grad_hook(self._accumulated) for p in self.params),
        ]

    def _pre(self, _module, _inputs) -> None:
        self.timeline.enter(f"{self.label} forward")

    def _post(self, _module, _inputs, output) -> None:
        self.timeline.enter("other")
        waiting = [t for t in _tensors(output) if t.requires_grad]
        if not waiting or not self.timeline.recording:
            return
        left = [len(waiting)]

        def arrived(_grad):
            left[0] -= 1
            if left[0] == 0:  # every output's gradient is in: this module's backward begins
                # The heads' parameters need no gradient in the G step: then the backward ends
                # where the next module's begins, not at a last parameter gradient.
                self._params_left = sum(p.requires_grad for p in self.params)
                self.timeline.enter(f"{self.label} backward")

        for t in waiting:
            t.register_hook(arrived)

    def _accumulated(self, _param) -> None:
        self._params_left -= 1
        if self._params_left == 0:  # the last gradient of this module: its backward is over
            self.timeline.enter("other")

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def attach(trainer: Any, timeline: Timeline) -> list[Any]:
    """Hooks on G and on D's parts; returns handles (``.remove()``)."""
    D = trainer.D
    parts: list[tuple[nn.Module | None, str]] = [
        (trainer.G, "G"),
        (getattr(D, "augment", None), "DiffAugment"),
    ]
    projector = getattr(D, "projector", None)
    if hasattr(projector, "feature_network") and hasattr(projector, "head"):
        parts += [(projector.feature_network, "feature network"), (projector.head, "projection")]
    else:
        parts.append((projector, "feature network"))
    parts.append((getattr(D, "discriminator", None), "heads"))
    hooks: list[Any] = [
        PhaseHooks(timeline, m, label) for m, label in parts if isinstance(m, nn.Module)
    ]
    from torch.optim import optimizer as opt

    hooks.append(opt.register_optimizer_step_pre_hook(lambda *_: timeline.enter("optimiser")))
    hooks.append(opt.register_optimizer_step_post_hook(lambda *_: timeline.enter("other")))
    return hooks


def profile_steps(trainer: Any, steps: int, warmup: int) -> dict[str, Any]:
    """Warm-up steps, then ``steps`` recorded ones; seconds per step for each phase."""
    device = trainer.device
    timeline = Timeline(device)
    hooks = attach(trainer, timeline)
    try:
        for _ in range(warmup):
            trainer.step()
        tt.sync(device)
        timeline.recording = True
        for _ in range(steps):
            timeline.enter("other")
            trainer.step()
        timeline.enter("end")
        timeline.recording = False
        tt.sync(device)
    finally:
        for h in hooks:
            h.remove()
    device_s, host_s = timeline.totals()
    total = sum(device_s.values())
    phases = {
        label: {
            "device_ms": 1e3 * device_s[label] / steps,
            "host_ms": 1e3 * host_s.get(label, 0.0) / steps,
            "share": device_s[label] / total if total else 0.0,
        }
        for label in sorted(device_s, key=device_s.get, reverse=True)
    }
    groups: dict[str, float] = defaultdict(float)
    for label, seconds in device_s.items():
        groups[GROUPS[label.removesuffix(" forward").removesuffix(" backward")]] += seconds
    return {
        "step_ms": 1e3 * total / steps,
        "phases": phases,
        "groups": {
            g: {"ms": 1e3 * s / steps, "share": s / total if total else 0.0}
            for g, s in sorted(groups.items(), key=lambda kv: -kv[1])
        },
        "steps": steps,
        "warmup": warmup,
    }


def torch_profile(trainer: Any, trace_dir: Path | None, rows: int = 15) -> list[dict[str, Any]]:
    """One step under ``torch.profiler``; the top operators by self time on the device."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if trainer.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        trainer.step()
        tt.sync(trainer.device)
    if trace_dir is not None:
        trace_dir.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace_dir / "step_trace.json"))
    cuda = trainer.device.type == "cuda"

    def self_time(e: Any) -> float:  # microseconds; the attribute names moved across versions
        if cuda:
            return getattr(e, "self_device_time_total", None) or e.self_cuda_time_total
        return e.self_cpu_time_total

    events = sorted(prof.key_averages(), key=self_time, reverse=True)[:rows]
    return [{"op": e.key, "self_ms": self_time(e) / 1e3, "calls": e.count} for e in events]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="minimal_cpu")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--steps", type=int, default=3, help="recorded steps")
    p.add_argument("--warmup", type=int, default=None, help="default: 1 on CPU, 3 on CUDA")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--random-data", action="store_true", help="random uint8 images, no files")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--torch-profiler", action="store_true", help="also list the top operators")
    p.add_argument("--trace", type=Path, default=None, metavar="DIR", help="Chrome trace here")
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    if args.warmup is None:
        args.warmup = 3 if args.device.startswith("cuda") else 1
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.set = [*args.set, "train.compile=false"]  # hooks cannot see inside compiled graphs
    spec = tt.make_spec(args)
    trainer = tt.build_trainer(spec, args.random_data)
    result = profile_steps(trainer, args.steps, args.warmup)
    if args.torch_profiler or args.trace is not None:
        result["top_ops"] = torch_profile(trainer, args.trace)
    result.update(
        preset=args.preset,
        settings=tt.settings(trainer, spec),
        overrides=args.set,
        device=str(trainer.device),
        device_name=tt._device_name(trainer.device),
        torch=torch.__version__,
        python=platform.python_version(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    print(
        f"profile of Trainer.step(): {args.preset} on {result['device_name']}, "
        f"{result['settings']}, {result['step_ms']:.1f} ms/step over {args.steps} step(s)"
    )
    print(f"  {'group':<12} {'ms/step':>9} {'share':>7}")
    for name, g in result["groups"].items():
        print(f"  {name:<12} {g['ms']:>9.2f} {100 * g['share']:>6.1f}%")
    print(f"  {'phase':<26} {'device ms':>10} {'host ms':>9} {'share':>7}")
    for label, ph in result["phases"].items():
        print(
            f"  {label:<26} {ph['device_ms']:>10.2f} {ph['host_ms']:>9.2f} "
            f"{100 * ph['share']:>6.1f}%"
        )
    for op in result.get("top_ops", []):
        print(f"  op {op['op'][:60]:<60} {op['self_ms']:>9.2f} ms x{op['calls']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
