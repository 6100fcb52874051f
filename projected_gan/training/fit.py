"""The fit loop: steps until the image budget, with ticks, samples, metrics and snapshots.

Read :func:`fit` top to bottom: it is the schedule of a run. The work of one step lives in
:mod:`projected_gan.training.step`, what a snapshot holds in :mod:`~projected_gan.training.state`,
and the trainer (:class:`~projected_gan.training.trainer.Trainer`) ties them together.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from projected_gan import distributed
from projected_gan.atomic import remove_partial_writes
from projected_gan.training import recovery
from projected_gan.training.state import TrainingStopped

__all__ = ["crossed", "fit", "tick_record"]


def crossed(prev: int, now: int, every_kimg: float) -> bool:
    """Whether a multiple of ``every_kimg`` thousand images lies in ``(prev, now]``."""
    every = max(int(round(every_kimg * 1000)), 1)
    return now // every > prev // every


def tick_record(trainer: Any, tick_seconds: float, tick_images: int) -> dict[str, Any]:
    """The log line of a tick (means since the last one); stops a run of bad steps."""
    means, bad_tick, bad_run = trainer.core.read_tick()
    c = trainer.counters
    record: dict[str, Any] = {
        "tick": c.tick,
        "kimg": round(c.nimg / 1000, 3),
        "seconds": round(c.elapsed + trainer.session_seconds(), 2),
        "img_per_s": round(tick_images / max(tick_seconds, 1e-9), 2),
        "sec_per_kimg": round(tick_seconds / max(tick_images / 1000, 1e-9), 3),
        "lr_g": trainer.g_opt.param_groups[0]["lr"],
        "lr_d": trainer.d_opt.param_groups[0]["lr"],
        "bad_steps": bad_tick,
    }
    record.update({k.replace("/", "_"): v for k, v in means.items()})
    if trainer.device.type == "cuda":
        record["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(trainer.device) / 2**30, 3)
    c.bad_steps_total += bad_tick
    if bad_tick:
        warnings.warn(
            f"{bad_tick} step(s) with a non-finite loss or gradient were skipped this tick "
            f"(kimg {record['kimg']}); {bad_run} in a row",
            stacklevel=2,
        )
    max_bad = trainer.spec.train.max_bad_steps
    if bad_run >= max_bad:
        raise TrainingStopped(
            f"{bad_run} consecutive steps had non-finite losses or gradients "
            f"(train.max_bad_steps={max_bad}); stopping. The last good "
            "checkpoint is unchanged; lower the learning rate or use precision=fp32."
        )
    return record


@contextmanager
def stop_signals(distributed_run: bool) -> Iterator[dict[str, int | None]]:
    """Catch SIGINT/SIGTERM for the duration: ``state["signal"]`` is set instead of dying."""
    state: dict[str, int | None] = {"signal": None}

    def on_signal(signum, _frame):
        # A second Ctrl-C leaves at once; not under torchrun, which forwards the terminal's
        # Ctrl-C to ranks that already got it, and kills them itself if they linger.
        if state["signal"] is not None and not distributed_run:
            raise KeyboardInterrupt
        state["signal"] = state["signal"] or signum

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, on_signal)
    try:
        yield state
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)


def _is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes, captured output)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


def _progress_bar(trainer: Any, total: int):  # -> tqdm
    from tqdm.auto import tqdm

    global_batch = trainer.global_batch
    nimg = trainer.counters.nimg
    last = max(nimg, -(-total // global_batch) * global_batch)  # nimg at the end
    return tqdm(
        total=last / 1000,
        initial=nimg / 1000,
        unit="kimg",
        bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}] {postfix}",
        dynamic_ncols=True,
    )


def fit(trainer: Any, kimg: float | None = None, progress: bool = True) -> Path | None:
    """Train ``trainer`` until ``kimg`` thousand images (default ``spec.train.kimg``).

    Ctrl-C (SIGINT) and SIGTERM finish the current step, save a checkpoint and return.
    Distributed, call it on every rank: rank 0 makes the run folder and tells the others,
    and a signal on any rank stops all of them after the same step (one step later).
    Returns the run folder.
    """
    t = trainer.spec.train
    c = trainer.counters
    total = int(round((kimg if kimg is not None else t.kimg) * 1000))
    dist = trainer.dist
    if trainer.is_main:
        remove_partial_writes(trainer.ensure_run_dir(), report=print)  # temp files of a kill
    if dist.enabled:
        trainer.run_dir = distributed.broadcast_object(trainer.run_dir)
    vote = distributed.StopVote(trainer.device, dist.world_size)
    # A terminal gets a progress bar; a log file (stdout redirected) one plain line per tick,
    # since tqdm's redraws are noise there.
    show = progress and trainer.is_main
    plain = show and not _is_terminal(sys.stdout)
    bar = _progress_bar(trainer, total) if show and not plain else None
    trainer.start_session()
    try:
        with stop_signals(dist.enabled) as stop:
            # Start: what the data and the untrained G look like, and the baseline metrics.
            if trainer.is_main and c.nimg == 0:
                trainer.save_reals()
                trainer.save_samples("fakes_init.png")
            at_start = trainer.spec.metrics.at_start
            if c.nimg == 0 and at_start and trainer.evaluate is not None and t.metrics_every > 0:
                recovery.check_metric(trainer, trainer.run_metrics())  # the baseline: no firing
            tick_start, tick_nimg = time.perf_counter(), c.nimg
            stopping = not dist.enabled and stop["signal"] is not None
            while c.nimg < total and not stopping:
                prev = c.nimg
                trainer.step()
                stopping = vote(stop["signal"] is not None)  # the same answer on every rank
                now = c.nimg
                done = now >= total

                # Tick: one host sync, one log line, the progress bar.
                if crossed(prev, now, t.tick) or done:
                    record = tick_record(trainer, time.perf_counter() - tick_start, now - tick_nimg)
                    c.tick += 1
                    firings = recovery.check_tick(trainer, record)  # adds the health signals
                    if trainer.is_main:
                        trainer.logger.log_scalars(record, now)
                        losses = (
                            f"G {record.get('loss_g', float('nan')):.3f} "
                            f"D {record.get('loss_d', float('nan')):.3f}"
                        )
                        if bar is not None:
                            bar.update(now / 1000 - bar.n)
                            bar.set_postfix_str(f"{losses} {record['img_per_s']:.0f} img/s")
                        elif plain:
                            print(
                                f"kimg {now / 1000:.3f}/{total / 1000:.3f}  "
                                f"{record['img_per_s']:.1f} img/s  {losses}",
                                flush=True,
                            )
                    tick_start, tick_nimg = time.perf_counter(), now
                    # Health: warn, stop, or roll back (the loop then goes on from there).
                    if recovery.respond(trainer, firings):
                        c = trainer.counters  # the snapshot's
                        tick_start, tick_nimg = time.perf_counter(), c.nimg
                        continue

                # Samples: the fixed-latent grid of G_ema.
                if trainer.is_main and (crossed(prev, now, t.sample_every) or done):
                    trainer.save_samples()

                # Metrics: on every rank (each embeds its share), logged by rank 0.
                if crossed(prev, now, t.metrics_every) or done:
                    results = trainer.run_metrics()
                    if recovery.respond(trainer, recovery.check_metric(trainer, results)):
                        c = trainer.counters  # the snapshot's
                        tick_start, tick_nimg = time.perf_counter(), c.nimg
                        continue

                # Snapshot: every rank (RNG states are gathered), rank 0 writes.
                if crossed(prev, now, t.snapshot_every) or done:
                    trainer.save()

            # Stop: a signal ends the run after a snapshot, ready to resume.
            if stopping:
                trainer.save()
                if trainer.is_main:
                    why = f"signal {stop['signal']}" if stop["signal"] else "another rank's signal"
                    print(
                        f"\nstopped by {why} at kimg {c.nimg / 1000:.3f}; checkpoint saved. "
                        f"Resume with: projected-gan train --resume {trainer.run_dir}"
                    )
    finally:
        trainer.end_session()
        if bar is not None:
            bar.close()
    return trainer.run_dir
