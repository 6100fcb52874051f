"""The training loop end to end on tiny sizes: run folder, exact resume, failure handling."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from projected_gan import ExperimentSpec, build_from_spec
from projected_gan.checkpoint import CheckpointError, find_checkpoints, load_checkpoint
from projected_gan.training import Trainer, TrainingStopped
from projected_gan.training.fit import tick_record
from projected_gan.training.step import ema_beta
from tests.conftest import tiny_overrides


def tiny_spec(out_dir, *extra):
    return ExperimentSpec.load(preset="minimal_cpu", overrides=[*tiny_overrides(out_dir), *extra])


def losses(logs):
    return [float(logs[k]) for k in ("loss_g", "loss_d_real", "loss_d_fake")]


def test_ema_beta_half_life_and_rampup():
    # Half-life of 10 kimg at batch 100: 100 steps halve the weight of the old average.
    beta = ema_beta(100, nimg=10**9, ema_kimg=10, rampup=None)
    assert math.isclose(beta**100, 0.5, rel_tol=1e-9)
    # Early in training the ramp-up shortens the half-life to 5% of the images seen.
    assert ema_beta(100, nimg=20_000, ema_kimg=10, rampup=0.05) == pytest.approx(
        0.5 ** (100 / 1000)
    )


def test_fit_writes_the_run_folder(tmp_path):
    trainer = build_from_spec(tiny_spec(tmp_path))
    run = trainer.fit(progress=False)
    assert run.parent == tmp_path and run.name.startswith("00000-fastgan_lite")
    names = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert {"spec.yaml", "log.jsonl", "samples/reals.png", "samples/fakes_init.png"} <= names
    assert "plots/losses.png" in names
    assert any(n.startswith("samples/fakes0") for n in names)
    ckpts = find_checkpoints(run)
    assert ckpts and ckpts[0].name == "snapshot-000000016.safetensors"
    ticks = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert ticks[-1]["kimg"] == 0.016
    assert all(math.isfinite(t["loss_g"]) and t["img_per_s"] > 0 for t in ticks)
    ckpt = load_checkpoint(ckpts[0])
    assert ckpt.meta["nimg"] == 16 and ckpt.meta["step"] == 4
    assert set(ckpt.models) == {"G", "G_ema", "D"}
    assert ExperimentSpec.from_file(run / "spec.yaml") == trainer.spec
    # The projector is stored too, so a resumed run uses the very same random projection.
    assert any(k.startswith("projector.") for k in ckpt.models["D"])


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    straight = build_from_spec(tiny_spec(tmp_path / "a"))
    expected = [losses(straight.step()) for _ in range(4)]

    first = build_from_spec(tiny_spec(tmp_path / "b"))
    for _ in range(2):
        first.step()
    first.save()
    run_dir = first.run_dir
    del first

    resumed = Trainer.resume(run_dir)
    assert resumed.nimg == 8 and resumed.step_index == 2
    got = [losses(resumed.step()) for _ in range(2)]
    for want, have in zip(expected[2:], got):
        assert have == pytest.approx(want, abs=1e-6, rel=1e-6)
    for p_straight, p_resumed in zip(straight.G_ema.parameters(), resumed.G_ema.parameters()):
        torch.testing.assert_close(p_straight, p_resumed, atol=1e-6, rtol=1e-5)


class NaNLoss:
    """Hinge loss that turns non-finite on chosen G steps."""

    def __init__(self, bad_steps):
        from projected_gan import create

        self.inner = create("losses", "hinge")
        self.bad_steps = set(bad_steps)
        self.calls = 0

    def g_loss(self, fake):
        loss, logs = self.inner.g_loss(fake)
        bad = self.calls in self.bad_steps
        self.calls += 1
        return (loss * float("nan") if bad else loss), logs

    def d_loss_real(self, real):
        return self.inner.d_loss_real(real)

    def d_loss_fake(self, fake):
        return self.inner.d_loss_fake(fake)


def test_non_finite_steps_are_skipped_and_counted(tmp_path):
    trainer = build_from_spec(tiny_spec(tmp_path, "train.max_bad_steps=3"))
    trainer.loss = NaNLoss(bad_steps={1})
    trainer.step()
    before = [p.detach().clone() for p in trainer.G.parameters()]
    trainer.step()  # G loss is NaN: G must not move
    for b, p in zip(before, trainer.G.parameters()):
        assert torch.equal(b, p)
    assert all(torch.isfinite(p).all() for p in trainer.G_ema.parameters())
    trainer.step()
    with pytest.warns(UserWarning, match="1 step"):
        record = tick_record(trainer, 1.0, 12)
    assert record["bad_steps"] == 1


def test_consecutive_bad_steps_stop_the_run_keeping_the_last_checkpoint(tmp_path):
    spec = tiny_spec(tmp_path, "train.max_bad_steps=2", "train.kimg=0.04")
    trainer = build_from_spec(spec)
    trainer.loss = NaNLoss(bad_steps=range(4, 100))
    with pytest.raises(TrainingStopped, match="consecutive"), pytest.warns(UserWarning):
        trainer.fit(progress=False)
    ckpts = find_checkpoints(trainer.run_dir)
    newest = load_checkpoint(ckpts[0])
    assert newest.meta["nimg"] <= 16  # nothing saved after the bad steps began
    assert all(
        torch.isfinite(v).all() for v in newest.models["G"].values() if v.is_floating_point()
    )


def test_broken_newest_checkpoint_falls_back_with_warning(tmp_path):
    trainer = build_from_spec(tiny_spec(tmp_path))  # 0.016 kimg: checkpoints at 0.008, 0.016
    trainer.fit(progress=False)
    ckpts = find_checkpoints(trainer.run_dir)
    assert len(ckpts) >= 2
    data = ckpts[0].read_bytes()
    ckpts[0].write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(ckpts[0])
    with pytest.warns(UserWarning, match="skipped unusable checkpoint"):
        resumed = Trainer.resume(trainer.run_dir)
    assert resumed.nimg == load_checkpoint(ckpts[1]).meta["nimg"]


def test_foreign_and_mismatched_checkpoints_are_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a projected-gan checkpoint"):
        load_checkpoint(foreign)
    pickle_file = tmp_path / "model.pkl"
    pickle_file.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError):
        load_checkpoint(pickle_file)

    trainer = build_from_spec(tiny_spec(tmp_path / "a"))
    path = trainer.save()
    other = build_from_spec(tiny_spec(tmp_path / "b", "data.resolution=64"))
    with pytest.raises(CheckpointError, match=r"data\.resolution: checkpoint 32 vs now 64"):
        other.load_state(load_checkpoint(path))


def test_failed_sample_write_warns_and_failed_checkpoint_stops(tmp_path, monkeypatch):
    import projected_gan.training.run_dir as run_dir
    import projected_gan.training.state as state

    trainer = build_from_spec(tiny_spec(tmp_path))
    trainer.step()
    first = trainer.save()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_dir, "save_image_grid", disk_full)
    with pytest.warns(UserWarning, match="could not write sample grid"):
        assert trainer.save_samples() is None
    monkeypatch.setattr(state, "save_checkpoint", disk_full)
    trainer.step()
    with pytest.raises(TrainingStopped, match="previous checkpoints are kept"):
        trainer.save()
    assert find_checkpoints(trainer.run_dir) == [first]
    assert load_checkpoint(first).meta["nimg"] == 4


def _train_cmd(out_dir, *extra):
    return [
        sys.executable,
        "-m",
        "projected_gan",
        "train",
        "--preset",
        "minimal_cpu",
        "--no-progress",
        *[a for o in tiny_overrides(out_dir) for a in ("--set", o)],
        *[a for o in extra for a in ("--set", o)],
    ]


def _wait_for(predicate, timeout, proc):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return predicate()
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_kill_during_checkpoint_write_then_resume(tmp_path):
    """SIGKILL while a checkpoint is half written: the previous one survives and resume works."""
    env = dict(os.environ, PROJECTED_GAN_CHECKPOINT_WRITE_DELAY="30")
    proc = subprocess.Popen(
        _train_cmd(tmp_path, "train.kimg=1"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # The first save (kimg 0.008) is delayed before its rename: wait for the temp file.
        def temp_file_present():
            return any(tmp_path.glob("*/checkpoints/.snapshot-*.tmp"))

        assert _wait_for(temp_file_present, 240, proc), proc.stderr.read().decode()[-2000:]
    finally:
        proc.kill()
        proc.wait()
    run = next(tmp_path.glob("0*"))
    assert find_checkpoints(run) == []  # the half-written one never became a checkpoint

    # Run again without the delay until a first checkpoint exists, then kill it mid-write.
    env["PROJECTED_GAN_CHECKPOINT_WRITE_DELAY"] = "0"
    out = subprocess.run(
        [sys.executable, "-m", "projected_gan", "train", "--resume", str(run), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # No checkpoint yet: resume must say so clearly rather than crash.
    assert out.returncode == 2 and "no checkpoints" in out.stderr, out.stderr

    subprocess.run(
        _train_cmd(tmp_path / "second", "train.kimg=0.008"), check=True, timeout=600, env=env
    )
    run2 = next((tmp_path / "second").glob("0*"))
    good = find_checkpoints(run2)
    assert len(good) == 1
    env["PROJECTED_GAN_CHECKPOINT_WRITE_DELAY"] = "30"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "projected_gan",
            "train",
            "--resume",
            str(run2),
            "--no-progress",
            "--set",
            "train.kimg=1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert _wait_for(lambda: any(run2.glob("checkpoints/.snapshot-*.tmp")), 240, proc)
    finally:
        proc.kill()
        proc.wait()
    assert find_checkpoints(run2) == good
    env["PROJECTED_GAN_CHECKPOINT_WRITE_DELAY"] = "0"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "projected_gan",
            "train",
            "--resume",
            str(run2),
            "--no-progress",
            "--set",
            "train.kimg=0.016",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr and "kimg 0.008" in out.stderr
    assert load_checkpoint(find_checkpoints(run2)[0]).meta["nimg"] == 16


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_keeps_the_image_counter(tmp_path):
    proc = subprocess.Popen(
        _train_cmd(tmp_path, "train.kimg=5", "train.snapshot_every=100"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: any(tmp_path.glob("*/log.jsonl")), 240, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by signal" in out
    run = next(tmp_path.glob("0*"))
    nimg = load_checkpoint(find_checkpoints(run)[0]).meta["nimg"]
    assert nimg > 0
    resumed = Trainer.resume(run)
    assert resumed.nimg == nimg


def test_cli_resume_of_a_missing_folder_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "projected_gan", "train", "--resume", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2  # a usage problem: one line, no traceback
    assert "nope does not exist; --resume takes a run folder" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_hand_assembled_trainer(tmp_path):
    """The documented way to train your own modules without a spec file."""
    from projected_gan import ProjectedDiscriminator, create
    from projected_gan.data import InfiniteBatches, default_dataset_path, load_image_dataset

    data = load_image_dataset(default_dataset_path(), 32, max_images=32)
    G = create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    D = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "input_size": 64},
        img_resolution=32,
    )
    spec = ExperimentSpec.validate_dict({"train": {"batch": 4}, "output": {"dir": str(tmp_path)}})
    trainer = Trainer(
        G, D, loss=create("losses", "hinge"), batches=InfiniteBatches(data, 4), spec=spec
    )
    logs = trainer.step()
    assert torch.isfinite(logs["loss_g"]) and trainer.nimg == 4
    assert Path(trainer.save()).is_file()


def _hand_built_parts():
    from projected_gan import ProjectedDiscriminator, create
    from projected_gan.data import default_dataset_path, load_image_dataset

    data = load_image_dataset(default_dataset_path(), 32, max_images=32)
    G = create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    D = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "input_size": 64},
        img_resolution=32,
    )
    return data, G, D


def test_hand_built_trainer_takes_its_batch_from_the_batches(tmp_path):
    """Batches of 8 and no spec: 8 fakes per phase, 8 images counted per step."""
    from projected_gan import InfiniteBatches, create

    data, G, D = _hand_built_parts()
    fakes_per_call = []
    G.register_forward_hook(lambda _m, args, _out: fakes_per_call.append(args[0].shape[0]))
    trainer = Trainer(G, D, loss=create("losses", "hinge"), batches=InfiniteBatches(data, 8))
    assert trainer.spec.train.batch == 8
    trainer.step()
    assert fakes_per_call == [8, 8]  # G phase, D phase
    assert trainer.nimg == 8
    trainer.step()
    assert trainer.nimg == 16


def test_spec_batch_disagreeing_with_the_batches_is_an_error(tmp_path):
    from projected_gan import InfiniteBatches, SpecError, create

    data, G, D = _hand_built_parts()
    spec = ExperimentSpec.validate_dict({"train": {"batch": 16}})
    with pytest.raises(SpecError, match=r"^train\.batch: 16, but the batches hold 8 images"):
        Trainer(G, D, loss=create("losses", "hinge"), batches=InfiniteBatches(data, 8), spec=spec)
