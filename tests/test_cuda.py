"""The CUDA-only paths on a GPU: each precision, non-finite steps skipped on the device, exact
resume, generation, metrics, ``torch.compile``, SyncBatchNorm, pinned batches, memory in the log.

Every test here is marked ``cuda`` and skips where torch sees no GPU (``tests/conftest.py``); run
them with ``python -m pytest -m cuda`` (``benchmarks/gpu_check.sh`` does, on a fresh GPU machine).
Sizes: the ``fastgan_lite_256`` preset at 256 px, batch 8, on the shipped flowers64 images
(upscaled), so each test takes seconds on a GPU.

``PROJECTED_GAN_CUDA_TESTS_ON_CPU=1`` runs the same tests on the CPU at 32 px, where the checks
that only mean something on CUDA skip: a rehearsal of the tests' own logic where no GPU is lent,
never a substitute for the GPU run. Findings that are reports rather than pass/fail (graph
breaks, ...) are printed, and appended as JSON lines to ``$PROJECTED_GAN_CUDA_REPORT`` if set.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from projected_gan import (
    InfiniteBatches,
    ProjectedDiscriminator,
    build_from_spec,
    commands,
    distributed,
)
from projected_gan.data import default_dataset_path, load_image_dataset
from projected_gan.inference import generate_images, load_generator
from projected_gan.metrics import evaluate_real_split
from projected_gan.training import Trainer
from tests.cuda_support import (
    BF16_TOL,
    DEVICE,
    ON_GPU,
    _restore_torch_globals,  # noqa: F401  (an autouse fixture: undoes build_from_spec's switches)
    copies,
    losses,
    make_spec,
    mean_abs_diff,
    moved,
    no_host_sync,
    read_jsonl,
    report,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.filterwarnings("ignore::projected_gan.data.DataWarning"),
]
gpu_only = pytest.mark.skipif(not ON_GPU, reason="means something on CUDA only (CPU rehearsal)")


# ------------------------------------------------------------------------------ training steps
PRECISIONS = {
    "fp32": ("train.precision=fp32", "train.tf32=false"),
    "tf32": ("train.precision=fp32", "train.tf32=true"),
    "bf16": ("train.precision=bf16",),
    "auto": ("train.precision=auto",),
}


def test_each_precision_trains_and_its_first_step_agrees_with_fp32(tmp_path):
    first = {}
    for name, overrides in PRECISIONS.items():
        trainer = build_from_spec(make_spec(tmp_path / name, *overrides))
        if ON_GPU:
            tf32 = "train.tf32=false" not in overrides
            assert torch.backends.cuda.matmul.allow_tf32 is tf32, name
            assert torch.backends.cudnn.allow_tf32 is tf32, name
        heads = trainer.D.trainable_parameters()
        g_before, d_before = copies(trainer.G.parameters()), copies(heads)
        steps = [losses(trainer.step()) for _ in range(3)]
        assert all(math.isfinite(v) for s in steps for v in s), (name, steps)
        assert moved(g_before, trainer.G.parameters()) and moved(d_before, heads), name
        assert all(torch.isfinite(p).all() for p in trainer.G_ema.parameters()), name
        # channels_last (the presets' default) survives the fused Adam updates.
        for module in (trainer.G, trainer.D.discriminator):
            for p in module.parameters():
                if p.ndim == 4:
                    assert p.is_contiguous(memory_format=torch.channels_last), (name, p.shape)
        first[name] = steps[0]
        report("precision", precision=name, losses=steps)
        del trainer, heads
        if ON_GPU:
            torch.cuda.empty_cache()
    for name in ("tf32", "bf16", "auto"):
        assert first[name] == pytest.approx(first["fp32"], abs=BF16_TOL, rel=BF16_TOL), name
    assert first["bf16"] != first["fp32"]  # autocast really computed in bf16
    if ON_GPU:  # "auto" means bf16 on CUDA
        assert first["auto"] == pytest.approx(first["bf16"], abs=1e-2, rel=1e-2)


@gpu_only
def test_steps_never_wait_for_the_gpu(tmp_path):
    trainer = build_from_spec(make_spec(tmp_path))
    trainer.step()  # warm-up: cuDNN autotuning, allocator growth
    with no_host_sync():
        logs = [trainer.step() for _ in range(3)]
    assert all(math.isfinite(v) for s in logs for v in losses(s))


class NaNOutput:
    """Forward hook: while armed, G's output turns NaN in grad mode (the G step) only."""

    def __init__(self) -> None:
        self.armed = 0
        self.fired = 0

    def __call__(self, _module, _inputs, output):
        if self.armed and torch.is_grad_enabled():
            self.armed -= 1
            self.fired += 1
            return output * float("nan")
        return None


def test_a_non_finite_step_is_skipped_on_the_device_and_counted(tmp_path):
    trainer = build_from_spec(make_spec(tmp_path, "train.max_bad_steps=3"))
    nan = NaNOutput()
    trainer.G.register_forward_hook(nan)
    trainer.step()  # a good step first: the optimiser state exists
    heads = trainer.D.trainable_parameters()
    g_before, d_before = copies(trainer.G.parameters()), copies(heads)
    nan.armed = 1
    with no_host_sync():  # the skip is decided on the device (fused Adam's found_inf)
        logs = trainer.step()
    assert nan.fired == 1 and not math.isfinite(float(logs["loss_g"]))
    for before, p in zip(g_before, trainer.G.parameters()):
        assert torch.equal(before, p)  # the bad G step changed nothing
    assert moved(d_before, heads)  # the same iteration's D step was good and applied
    assert all(torch.isfinite(p).all() for p in trainer.G_ema.parameters())

    # One more bad G step inside fit: the tick log counts both.
    nan.armed = 1
    batch = trainer.spec.train.batch
    with pytest.warns(UserWarning, match="skipped"):
        run = trainer.fit(kimg=(trainer.nimg + 2 * batch) / 1000, progress=False)
    ticks = [r for r in read_jsonl(run / "log.jsonl") if "bad_steps" in r]
    assert sum(r["bad_steps"] for r in ticks) == 2 and nan.fired == 2
    assert all(torch.isfinite(p).all() for p in trainer.G.parameters())


@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "default"])
def test_checkpoint_and_exact_resume(tmp_path, deterministic):
    extra = f"train.deterministic={str(deterministic).lower()}"
    straight = build_from_spec(make_spec(tmp_path / "a", extra))
    initial_ema = copies(straight.G_ema.parameters())
    expected = [losses(straight.step()) for _ in range(4)]
    straight_ema = copies(straight.G_ema.parameters())
    del straight

    first = build_from_spec(make_spec(tmp_path / "b", extra))
    for _ in range(2):
        first.step()
    first.save()
    run_dir, batch = first.run_dir, first.spec.train.batch
    del first

    resumed = Trainer.resume(run_dir)
    assert resumed.nimg == 2 * batch
    assert next(resumed.G.parameters()).device.type == DEVICE
    got = [losses(resumed.step()) for _ in range(2)]
    # Even with train.deterministic some CUDA backward kernels (grid_sample in DiffAugment,
    # adaptive pooling) accumulate with atomics, so two runs may differ by rounding: compare
    # within bf16 tolerance, and report how far apart they are.
    gap = max(abs(h - w) for hs, ws in zip(got, expected[2:]) for h, w in zip(hs, ws))
    # G_ema: how far the resumed run ended from the straight one, against how far training
    # moved it (mean absolute values over all weights).
    ema_gap = mean_abs_diff(straight_ema, resumed.G_ema.parameters())
    ema_moved = mean_abs_diff(straight_ema, initial_ema)
    found = {"max_loss_gap": gap, "ema_gap": ema_gap, "ema_moved": ema_moved}
    report("resume", deterministic=deterministic, **found)
    for want, have in zip(expected[2:], got):
        assert have == pytest.approx(want, abs=BF16_TOL, rel=BF16_TOL)
    assert ema_moved > 0 and ema_gap < 0.05 * ema_moved


# ------------------------------------------------------------------------- using a trained G
def test_generate_from_a_gpu_checkpoint_matches_the_cpu(tmp_path):
    trainer = build_from_spec(make_spec(tmp_path))
    trainer.step()
    trainer.save()
    run_dir, res = trainer.run_dir, trainer.spec.data.resolution
    del trainer

    grid, outdir = tmp_path / "grid.png", tmp_path / "seeds"
    written = commands.generate(
        str(run_dir), "0-3", grid=str(grid), outdir=str(outdir), device=DEVICE
    )
    assert len(written) == 5 and all(p.is_file() for p in written)
    from PIL import Image

    with Image.open(outdir / "seed0000.png") as im:
        assert im.size == (res, res)

    # The same seeds give the same pictures on the GPU and the CPU (fp32, TF32 off).
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    on_device, _ = load_generator(run_dir, device=DEVICE)
    on_cpu, _ = load_generator(run_dir, device="cpu")
    a = generate_images(on_device, [0, 1, 2, 3]).cpu().int()
    b = generate_images(on_cpu, [0, 1, 2, 3]).int()
    diff = (a - b).abs()
    assert a.dtype == b.dtype and a.shape == (4, 3, res, res)
    assert diff.float().mean() < 0.05 and diff.max() <= 2, (diff.float().mean(), diff.max())


def test_fit_logs_peak_memory_and_computes_fd(tmp_path):
    probe = make_spec(tmp_path)
    batch = probe.train.batch
    spec = make_spec(
        tmp_path,
        "metrics.names=[fd]",
        "metrics.num_images=64",
        f"train.tick={batch / 1000}",
        f"train.metrics_every={2 * batch / 1000}",
        f"train.kimg={4 * batch / 1000}",
    )
    run = build_from_spec(spec).fit(progress=False)
    ticks = [r for r in read_jsonl(run / "log.jsonl") if "img_per_s" in r]
    assert len(ticks) == 4
    if ON_GPU:
        total_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
        assert all(0 < r["peak_mem_gb"] < total_gib for r in ticks), ticks
    metrics = read_jsonl(run / "metrics.jsonl")
    fds = [r["fd"] for r in metrics]
    assert len(fds) == 3 and all(math.isfinite(v) and v >= 0 for v in fds), metrics
    report("fit", peak_mem_gb=[r.get("peak_mem_gb") for r in ticks], fd=fds)


def test_fd_on_the_gpu_equals_fd_on_the_cpu():
    dataset = load_image_dataset(default_dataset_path(), 64, max_images=64)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    gpu = evaluate_real_split(dataset, "fd", device=DEVICE, batch_size=32)["fd"]
    cpu = evaluate_real_split(dataset, "fd", device="cpu", batch_size=32)["fd"]
    report("fd_devices", gpu=gpu, cpu=cpu)
    assert gpu == pytest.approx(cpu, rel=1e-2)


# --------------------------------------------------------------------------- SyncBatchNorm
@gpu_only
def test_sync_batchnorm_heads_train_in_a_one_process_group(tmp_path):
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        trainer = build_from_spec(make_spec(tmp_path, "train.sync_batchnorm=true"))
        # Alone, build_from_spec has nothing to synchronise; convert as a multi-process run does.
        distributed.sync_batchnorm_heads(trainer.D)
        heads = trainer.D.discriminator
        assert any(isinstance(m, nn.SyncBatchNorm) for m in heads.modules())
        assert not any(isinstance(m, nn.SyncBatchNorm) for m in trainer.D.projector.modules())
        before = copies(heads.parameters())
        steps = [losses(trainer.step()) for _ in range(2)]
        assert all(math.isfinite(v) for s in steps for v in s)
        assert moved(before, heads.parameters())  # the optimiser still holds the heads' weights
    finally:
        dist.destroy_process_group()


def _small_d() -> ProjectedDiscriminator:
    torch.manual_seed(0)
    return ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "pretrained": False, "input_size": 64},
        augment=None,
        img_resolution=64,
    )


def _d_pass(D: ProjectedDiscriminator, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """One train-mode forward/backward; the heads' BatchNorm statistics and gradients."""
    D.train()
    D(images).mean().backward()
    out = {}
    norms = [m for m in D.discriminator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for i, m in enumerate(norms):
        out[f"bn{i}.mean"] = m.running_mean.detach().cpu()
        out[f"bn{i}.var"] = m.running_var.detach().cpu()
    for i, p in enumerate(D.trainable_parameters()):
        out[f"grad{i}"] = p.grad.detach().cpu()
    return out


def _images() -> torch.Tensor:
    return torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _sync_bn_rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        D = distributed.sync_batchnorm_heads(_small_d()).cuda()
        torch.save(_d_pass(D, _images()[rank::world].cuda()), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@gpu_only
def test_sync_batchnorm_over_two_processes_equals_one_process_on_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    # Two ranks on one GPU: NCCL refuses a shared device, gloo carries CUDA tensors.
    mp.start_processes(
        _sync_bn_rank, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    whole = _d_pass(_small_d().cuda(), _images().cuda())
    assert any(key.startswith("bn") for key in whole), "the heads have no BatchNorm to test"
    for key, want in whole.items():
        if key.startswith("bn"):  # every rank holds the statistics of the whole batch
            for r in ranks:
                torch.testing.assert_close(r[key], want, rtol=1e-4, atol=1e-5, msg=key)
        else:  # averaged over ranks (as the training loop does), the gradients of the whole batch
            mean = (ranks[0][key] + ranks[1][key]) / 2
            scale = want.abs().max().clamp_min(1e-12)
            torch.testing.assert_close(mean / scale, want / scale, rtol=1e-3, atol=1e-4, msg=key)


# ------------------------------------------------------------------------------ data on the GPU
def test_pinned_host_batches_equal_device_resident_ones():
    dataset = load_image_dataset(default_dataset_path(), 64, max_images=24)
    kwargs = {"seed": 3, "mirror": True, "device": DEVICE}
    resident = InfiniteBatches(dataset, 8, **kwargs)
    streamed = InfiniteBatches(dataset, 8, **kwargs, gpu_cache_bytes=0)  # pinned, side stream
    assert resident.resident and not streamed.resident
    busy = torch.randn(1024, 1024, device=DEVICE)
    for i in range(14):  # past two epochs of 48 samples
        want, _ = next(resident)
        got, _ = next(streamed)
        busy = busy @ busy  # device work queued between batches: the copy must still be awaited
        busy /= busy.norm()
        assert got.dtype == torch.uint8 and got.device.type == DEVICE
        assert torch.equal(got, want), f"batch {i}"
    again = InfiniteBatches(dataset, 8, **kwargs, gpu_cache_bytes=0)
    again.load_state_dict(streamed.state_dict())
    assert torch.equal(next(again)[0], next(streamed)[0])


def test_mapped_and_streamed_batches_on_the_device_equal_resident_ones():
    """Issue #25: the mapped cache gathered ahead in a thread, and decoding on the fly in
    DataLoader workers (pinned), give the resident batches, without host-device syncs."""
    path = default_dataset_path()
    mapped = load_image_dataset(path, 64, max_images=24, conditional=True)
    streaming = load_image_dataset(
        path, 64, max_images=24, conditional=True, storage="stream", workers=2
    )
    assert mapped.mapped
    kwargs = {"seed": 5, "mirror": True, "device": DEVICE}
    resident = InfiniteBatches(mapped, 8, **kwargs)
    gathered = InfiniteBatches(mapped, 8, **kwargs, gpu_cache_bytes=0, gather_ahead=True)
    streamed = InfiniteBatches(streaming, 8, **kwargs)
    for it in (gathered, streamed):  # warm: thread and workers started outside the check
        next(it)
    next(resident)
    with no_host_sync():
        batches = [(next(resident), next(gathered), next(streamed)) for _ in range(8)]
    for i, ((x, y), (u, v), (s, t)) in enumerate(batches):
        assert u.device.type == s.device.type == DEVICE
        assert torch.equal(x, u) and torch.equal(x, s), f"batch {i}"
        assert torch.equal(y, v) and torch.equal(y, t), f"batch {i}"
    streamed.close()


# ---------------------------------------------- torch.compile (last: the slowest, a cold compile)
def _where(reason) -> str:
    stack = getattr(reason, "user_stack", None) or []
    return f"{stack[-1].filename}:{stack[-1].lineno}" if stack else "?"


def test_compiled_g_and_d_match_eager_and_list_graph_breaks(tmp_path, monkeypatch):
    if not ON_GPU:  # rehearsal: capture graphs, skip inductor's minutes of CPU code generation
        compile_fn = torch.compile
        monkeypatch.setattr(torch, "compile", lambda m, **kw: compile_fn(m, backend="eager", **kw))
    # Without augmentation nothing random runs inside the graphs (fastgan_lite has no noise), so
    # compiled and eager steps must agree up to rounding.
    no_aug = "discriminator.augment=null"
    compiled = build_from_spec(make_spec(tmp_path / "c", "train.compile=true", no_aug))
    got = [losses(compiled.step()) for _ in range(2)]
    del compiled
    eager = build_from_spec(make_spec(tmp_path / "e", no_aug))
    want = [losses(eager.step()) for _ in range(2)]
    report("compile_vs_eager", compiled=got, eager=want)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=BF16_TOL, rel=BF16_TOL)

    # Graph breaks of the default configuration (DiffAugment included), in both step modes.
    trainer = build_from_spec(make_spec(tmp_path / "x"))
    G, D = trainer.G, trainer.D
    z = torch.randn(trainer.spec.train.batch, G.z_dim, device=DEVICE)
    explained = {}
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=ON_GPU):
        explained["G"] = torch._dynamo.explain(G)(z)
        with torch.no_grad():
            fakes = G(z).float().contiguous(memory_format=torch.channels_last)
            explained["D, D step (no input grad)"] = torch._dynamo.explain(D)(fakes)
        explained["D, G step (input grad)"] = torch._dynamo.explain(D)(fakes.requires_grad_(True))
    torch._dynamo.reset()
    for name, out in explained.items():
        reasons = [f"{r.reason} at {_where(r)}" for r in out.break_reasons]
        report(
            "graph_breaks",
            module=name,
            graphs=out.graph_count,
            graph_breaks=out.graph_break_count,
            reasons=reasons,
        )
        assert out.graph_count >= 1, name
