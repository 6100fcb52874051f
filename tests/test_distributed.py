"""Data-parallel training under torchrun (CPU, gloo, 2 processes).

One torchrun launch runs this file as its worker script (``python tests/test_distributed.py
WORKDIR``); each rank writes a JSON report to ``WORKDIR/reports`` and the tests below read them.
The worker watches its own file writes with an audit hook, so "only rank 0 writes" is observed,
not assumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

if not __package__:  # run by torchrun as the worker script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import tiny_overrides

# The shared tiny spec; each use below sets its own length and output folder.
TINY = [o for o in tiny_overrides("") if not o.startswith(("train.kimg=", "output.dir="))]
# Augmentation draws per-rank random numbers, and BatchNorm in training mode normalises over
# each rank's own samples; with augmentation off and BatchNorm in eval mode, 2 ranks x batch 2
# must equal 1 process x batch 4.
EQUAL = [*TINY, "discriminator.augment=null", "train.kimg=1"]
EQUAL_STEPS = 2
SIGNAL_STEP = 2  # rank 1 sends itself SIGTERM during this step ...
STOP_STEP = 3  # ... and every rank stops after the next one (the vote lags by a step)
WRITE_EVENTS = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.truncate"}


class TinyFeatures(nn.Module):
    """A fixed random conv net with the feature-network contract (maps at two scales)."""

    input_size = 16

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = torch.relu(self.conv1(x))
        return [a, torch.relu(self.conv2(a))]


def metric_inputs():
    """A labelled 16 px dataset and a generator whose images depend on the labels only."""
    from projected_gan.data import ImageDataset

    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (16, 3, 16, 16), generator=gen, dtype=torch.uint8)
    dataset = ImageDataset(images, torch.arange(16) % 4)
    palette = torch.rand(4, 3, 16, 16, generator=gen) * 2 - 1

    def generator_fn(n: int, labels: torch.Tensor | None) -> torch.Tensor:
        return palette[labels]

    return dataset, generator_fn


METRIC_ARGS = dict(
    metrics=("fd", "kid"),
    num_images=12,  # 3 batches of 4 over 2 ranks: the last round is one batch short
    batch_size=4,
    device="cpu",
    mirror=True,
    kid={"subset_size": 6, "num_subsets": 10},
)


@contextlib.contextmanager
def one_thread():
    """Run in-process references on one thread, like each torchrun rank (OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def digest(*modules: nn.Module) -> str:
    h = hashlib.sha256()
    for module in modules:
        for p in module.parameters():
            h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def trained_state(trainer) -> dict[str, torch.Tensor]:
    """The trained tensors: G, G_ema and D's heads (the frozen projector never changes)."""
    state = {f"G.{k}": v for k, v in trainer.G.named_parameters()}
    state.update({f"G_ema.{k}": v for k, v in trainer.G_ema.named_parameters()})
    state.update({f"D.{k}": v for k, v in trainer.D.discriminator.named_parameters()})
    return {k: v.detach().clone() for k, v in state.items()}


# ------------------------------------------------------------------------------- the worker


def _watch_writes(roots: list[str], seen: list[str]) -> None:
    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (
                any(c in mode for c in "wax+")
                if isinstance(mode, str)
                else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            )
        elif event in WRITE_EVENTS:
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            full = os.path.abspath(os.fsdecode(path))
            if any(full.startswith(root) for root in roots):
                seen.append(f"{event} {full}")

    sys.addaudithook(hook)


def _worker(workdir: Path) -> None:
    import torch.distributed as dist

    from projected_gan import ExperimentSpec, build_from_spec, distributed
    from projected_gan.cli import main as cli_main
    from projected_gan.metrics import evaluate
    from projected_gan.spec import SpecError
    from projected_gan.training import Trainer

    rank = int(os.environ["RANK"])
    runs, cache = workdir / "runs", workdir / "metric_cache"
    writes: list[str] = []
    _watch_writes([str(runs), str(cache), os.environ["PROJECTED_GAN_CACHE"]], writes)
    report: dict = {"rank": rank}
    distributed.init_distributed(torch.device("cpu"))

    # Collectives on their own: the stop vote (rank 1 wishes at call 2) and uneven gathers.
    vote = distributed.StopVote("cpu", dist.get_world_size())
    report["votes"] = [vote(rank == 1 and i == 2) for i in range(6)]
    rows = torch.arange(6.0).view(3, 2) if rank == 0 else None
    report["gathered"] = [t.tolist() for t in distributed.all_gather_rows(rows, "cpu")]

    # Metrics: every rank embeds its share; rank 0 computes (second call: from the cache).
    dataset, generator_fn = metric_inputs()
    args = dict(METRIC_ARGS, feature_network=TinyFeatures(), cache_dir=cache, distributed=True)
    report["metrics"] = [evaluate(generator_fn, dataset, **args) for _ in range(2)]

    # SyncBatchNorm is for CUDA: on CPU the spec is refused with the field named.
    try:
        sync = [*EQUAL, "train.sync_batchnorm=true", f"output.dir={runs}"]
        build_from_spec(ExperimentSpec.load(preset="minimal_cpu", overrides=sync))
    except SpecError as exc:
        report["sync_bn_error"] = str(exc)

    # Equality run: BatchNorm in eval mode, no augmentation, a few steps by hand (no files).
    spec = ExperimentSpec.load(preset="minimal_cpu", overrides=[*EQUAL, f"output.dir={runs}"])
    trainer = build_from_spec(spec)
    trainer.G.eval()
    trainer.D.eval()
    report["equal_digests"], report["equal_losses"] = [digest(*_trained(trainer))], []
    for _ in range(EQUAL_STEPS):
        logs = trainer.step()
        report["equal_losses"].append({k: float(v) for k, v in logs.items()})
        report["equal_digests"].append(digest(*_trained(trainer)))
    if rank == 0:
        torch.save(trained_state(trainer), workdir / "reports" / "equal_state.pt")

    # The CLI, as torchrun runs it; rank 1 is sent SIGTERM during step SIGNAL_STEP.
    steps: list[dict] = []
    original_step = Trainer.step

    def observed_step(self):
        logs = original_step(self)
        if rank == 1 and self.step_index == SIGNAL_STEP:
            os.kill(os.getpid(), signal.SIGTERM)
        steps.append({"step": self.step_index, "digest": digest(*_trained(self))})
        report["run_dir"] = str(self.run_dir)
        report["loggers"] = [name for name, _ in self._loggers]
        return logs

    Trainer.step = observed_step
    argv = ["train", "--preset", "minimal_cpu", "--no-progress"]
    loggers = "output.loggers=[jsonl, tensorboard]"  # only rank 0 may build and feed them
    for override in [*TINY, "train.kimg=0.04", f"output.dir={runs}", loggers]:
        argv += ["--set", override]
    report["exit_code"] = cli_main(argv)
    report["cli_steps"] = steps
    report["writes"] = writes
    (workdir / "reports" / f"rank{rank}.json").write_text(json.dumps(report))


def _failing_worker(workdir: Path) -> None:
    """Rank 1 raises in its second step, while rank 0 waits for it in the gradient all-reduce."""
    from projected_gan.cli import main as cli_main
    from projected_gan.training import Trainer

    rank = int(os.environ["RANK"])
    original_step = Trainer.step

    def failing_step(self):
        if rank == 1 and self.step_index == 1:
            raise RuntimeError("injected failure")
        return original_step(self)

    Trainer.step = failing_step
    argv = ["train", "--preset", "minimal_cpu", "--no-progress"]
    for override in [*TINY, "train.kimg=0.04", f"output.dir={workdir / 'runs'}"]:
        argv += ["--set", override]
    sys.exit(cli_main(argv))


def _hanging_worker() -> None:
    """Rank 1 never arrives at the barrier: rank 0 must give up after the timeout."""
    from projected_gan import distributed

    distributed.init_distributed(torch.device("cpu"))
    if int(os.environ["RANK"]) == 1:
        time.sleep(120)
    t0 = time.perf_counter()
    try:
        distributed.barrier()
    except RuntimeError as exc:
        print(f"rank 0 gave up after {time.perf_counter() - t0:.1f} s: {exc}", flush=True)
        sys.exit(3)


def _trained(trainer) -> tuple[nn.Module, ...]:
    return trainer.G, trainer.G_ema, trainer.D.discriminator


# -------------------------------------------------------------------------------- the tests


def torchrun(*args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node=2 ARGS`` (+ environment), captured."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
    )


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dist")
    (workdir / "reports").mkdir()
    t0 = time.perf_counter()
    proc = torchrun(__file__, str(workdir))
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    reports = [json.loads((workdir / "reports" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"dir": workdir, "reports": reports, "stdout": proc.stdout, "seconds": seconds}


def test_stop_vote_agrees_one_step_late_and_rows_gather_unevenly(launch):
    for report in launch["reports"]:
        # Rank 1 alone wished to stop at call 2: every rank hears it at call 3.
        assert report["votes"] == [False, False, False, True, False, False]
        assert report["gathered"] == [[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]]


def test_distributed_metrics_equal_single_process(launch):
    from projected_gan.metrics import evaluate

    dataset, generator_fn = metric_inputs()
    alone = evaluate(
        generator_fn, dataset, **METRIC_ARGS, feature_network=TinyFeatures(), use_cache=False
    )
    assert set(alone) == {"fd", "kid", "kid_std"} and alone["fd"] > 0
    # Same fakes (labels drawn in the same global order), same features, same order: equal up
    # to float32 differences between thread counts in the convolutions.
    for report in launch["reports"]:
        for results in report["metrics"]:  # fresh, then from rank 0's cache
            assert results == pytest.approx(alone, rel=1e-5, abs=1e-7)
    cached = list((launch["dir"] / "metric_cache").rglob("*.npz"))
    assert len(cached) == 1


def test_sync_batchnorm_on_cpu_is_refused(launch):
    for report in launch["reports"]:
        assert "train.sync_batchnorm" in report["sync_bn_error"]
        assert "CUDA" in report["sync_bn_error"]


def test_parameters_identical_across_ranks_after_every_step(launch):
    rank0, rank1 = launch["reports"]
    assert len(rank0["equal_digests"]) == EQUAL_STEPS + 1
    assert rank0["equal_digests"] == rank1["equal_digests"]
    assert len(set(rank0["equal_digests"])) == EQUAL_STEPS + 1  # the steps did change them
    assert [s["digest"] for s in rank0["cli_steps"]] == [s["digest"] for s in rank1["cli_steps"]]


def test_two_ranks_equal_one_process_with_the_same_global_batch(launch, tmp_path):
    from projected_gan import ExperimentSpec, build_from_spec

    spec = ExperimentSpec.load(preset="minimal_cpu", overrides=[*EQUAL, f"output.dir={tmp_path}"])
    with one_thread():  # as torchrun's ranks: the same convolution arithmetic
        alone = build_from_spec(spec)
        alone.G.eval()
        alone.D.eval()
        initial = trained_state(alone)
        losses = [{k: float(v) for k, v in alone.step().items()} for _ in range(EQUAL_STEPS)]
    # Each rank's losses are means over its half of the batch: their average is the full mean.
    rank0, rank1 = launch["reports"]
    for step, want in enumerate(losses):
        for key in ("loss_g", "loss_d_real", "loss_d_fake"):
            have = (rank0["equal_losses"][step][key] + rank1["equal_losses"][step][key]) / 2
            assert have == pytest.approx(want[key], rel=1e-5, abs=1e-6), (step, key)
    # Parameters: the averaged gradients equal the full-batch ones up to float32 rounding (sums
    # in another order). Adam's first steps move each weight by about lr * sign(gradient), so a
    # weight whose gradient is ~0 may go either way: a few may differ by up to 2 lr per step;
    # all others must agree to 1e-6 (measured: ~30 of ~5M weights differ, by < 0.25 lr).
    ranks = torch.load(launch["dir"] / "reports" / "equal_state.pt")
    single = trained_state(alone)
    assert ranks.keys() == single.keys()
    diffs = torch.cat([(ranks[k] - single[k]).abs().flatten() for k in single])
    lr = spec.optim.lr
    assert diffs.max() <= 2 * lr * EQUAL_STEPS
    assert (diffs > 1e-6).float().mean() < 1e-4, int((diffs > 1e-6).sum())
    moved = torch.cat([(single[k] - v).abs().flatten() for k, v in initial.items()])
    assert moved.max() > 0.5 * lr  # not vacuous: the steps did move the weights


def test_only_rank_zero_writes_and_all_agree_on_the_run_folder(launch):
    rank0, rank1 = launch["reports"]
    assert rank1["writes"] == []
    assert any("checkpoints" in w for w in rank0["writes"])  # the watch does see writes
    runs = [p for p in (launch["dir"] / "runs").iterdir()]
    assert len(runs) == 1 and rank0["run_dir"] == rank1["run_dir"] == str(runs[0])
    names = {p.relative_to(runs[0]).as_posix() for p in runs[0].rglob("*") if p.is_file()}
    assert {"spec.yaml", "log.jsonl", "samples/reals.png", "samples/fakes_init.png"} <= names
    assert rank0["loggers"] == ["jsonl", "tensorboard"] and rank1["loggers"] == []
    assert len([n for n in names if n.startswith("tensorboard/events.out")]) == 1


def test_signal_on_one_rank_stops_every_rank_after_the_same_step(launch):
    from projected_gan.checkpoint import find_checkpoints, load_checkpoint

    rank0, rank1 = launch["reports"]
    assert rank0["exit_code"] == rank1["exit_code"] == 0
    assert [s["step"] for s in rank0["cli_steps"]] == list(range(1, STOP_STEP + 1))
    assert [s["step"] for s in rank1["cli_steps"]] == list(range(1, STOP_STEP + 1))
    assert "stopped by another rank's signal" in launch["stdout"]
    newest = load_checkpoint(find_checkpoints(Path(rank0["run_dir"]))[0])
    assert newest.meta["step"] == STOP_STEP and newest.meta["nimg"] == 4 * STOP_STEP
    assert newest.meta["world_size"] == 2
    # Both ranks' own RNG states were gathered into it.
    assert {"rng.torch", "rng.torch.1", "rng.latents"} <= set(newest.extra)


def test_resume_with_one_process_continues_the_same_counters(launch):
    from projected_gan.data import InfiniteBatches, load_dataset
    from projected_gan.training import Trainer

    run_dir = launch["reports"][0]["run_dir"]
    with one_thread():
        resumed = Trainer.resume(run_dir)  # 1 process now; the run was made by 2
    assert resumed.dist.world_size == 1 and resumed.batch == 4
    assert (resumed.nimg, resumed.step_index) == (4 * STOP_STEP, STOP_STEP)
    # The loader continues at the next global batch: the one a single process would see now.
    state = resumed.batches.state_dict()
    nxt, _ = next(resumed.batches)
    resumed.batches.load_state_dict(state)
    reference = InfiniteBatches(load_dataset(resumed.spec.data), 4, seed=0, mirror=True)
    for _ in range(STOP_STEP):
        next(reference)
    assert torch.equal(nxt, next(reference)[0])
    with one_thread():
        resumed.step()
    assert (resumed.nimg, resumed.step_index) == (4 * (STOP_STEP + 1), STOP_STEP + 1)


def test_a_failing_rank_is_named_and_ends_the_job(tmp_path):
    t0 = time.perf_counter()
    proc = torchrun(__file__, str(tmp_path), "fail", timeout=120)
    seconds = time.perf_counter() - t0
    assert proc.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: injected failure" in proc.stderr, proc.stderr[-3000:]
    assert seconds < 60  # the other rank did not wait for the 600 s collective timeout


def test_collectives_time_out_after_the_configured_seconds(tmp_path):
    from projected_gan.distributed import TIMEOUT_ENV

    proc = torchrun(__file__, str(tmp_path), "hang", timeout=120, **{TIMEOUT_ENV: "3"})
    assert proc.returncode != 0
    waited = [line for line in proc.stdout.splitlines() if "gave up after" in line]
    assert waited, proc.stdout[-2000:] + proc.stderr[-2000:]
    seconds = float(waited[0].split("gave up after ")[1].split(" s")[0])
    assert 2.5 <= seconds < 30


# ------------------------------------------------------------------ in-process, no launch


def test_collective_timeout_reads_the_environment(monkeypatch):
    from projected_gan.distributed import TIMEOUT_ENV, collective_timeout

    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert collective_timeout() == 600
    monkeypatch.setenv(TIMEOUT_ENV, "42.5")
    assert collective_timeout() == 42.5
    for bad in ("0", "-3", "ten", "inf"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=TIMEOUT_ENV):
            collective_timeout()


def test_sync_batchnorm_converts_the_heads_only():
    from projected_gan.discriminators import ProjectedDiscriminator
    from projected_gan.distributed import sync_batchnorm_heads

    D = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "pretrained": False, "input_size": 64},
        discriminator={"name": "multiscale", "norm": "batch"},
        img_resolution=32,
    )
    frozen = {id(m) for m in D.projector.modules() if isinstance(m, nn.BatchNorm2d)}
    assert frozen and any(isinstance(m, nn.BatchNorm2d) for m in D.discriminator.modules())
    heads_params = [id(p) for p in D.trainable_parameters()]
    sync_batchnorm_heads(D)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in D.discriminator.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.discriminator.modules())
    assert {id(m) for m in D.projector.modules() if isinstance(m, nn.BatchNorm2d)} == frozen
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in D.projector.modules())
    assert [id(p) for p in D.trainable_parameters()] == heads_params  # the optimiser's tensors
    assert not any(p.requires_grad for p in D.projector.parameters())
    with pytest.raises(TypeError, match="discriminator"):
        sync_batchnorm_heads(nn.Linear(2, 2))


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else "train"
    if mode == "fail":
        _failing_worker(Path(sys.argv[1]))
    elif mode == "hang":
        _hanging_worker()
    else:
        _worker(Path(sys.argv[1]))
