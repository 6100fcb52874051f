"""A run that goes wrong says so: health signals, the four conditions, and the three responses.

Conditions are made to fire on tiny runs by real causes (a generator whose output is made
constant collapses; a metric that rises evaluation after evaluation) or by thresholds set where
a tiny run crosses them; each test then reads the record back from log.jsonl and the checkpoint.
"""

import json
import math

import pytest
import torch

from projected_gan import ExperimentSpec, build_from_spec, create
from projected_gan.checkpoint import find_checkpoints, load_checkpoint
from projected_gan.cli import main
from projected_gan.spec.health import HealthSpec
from projected_gan.training import Trainer
from projected_gan.training.health import HealthMonitor
from projected_gan.training.health_signals import ema_distance, mean_pairwise_distance
from projected_gan.training.recovery import HEALTH_EXIT_CODE, HealthStopped, HealthWarning
from projected_gan.training.step import sign_stats
from tests.conftest import tiny_overrides
from tests.test_hand_built_runs import hand_built


def tiny_spec(out_dir, *extra):
    return ExperimentSpec.load(preset="minimal_cpu", overrides=[*tiny_overrides(out_dir), *extra])


def events(run_dir, kind="health"):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == kind]


def ticks(run_dir):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "event" not in r]


class Rising:
    """An evaluation whose metric gets worse every time (a stand-in for FD going up)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, G_ema):
        self.calls += 1
        return {"fd": 100.0 + self.calls}


# ------------------------------------------------------------------ signals, by hand
def test_sign_stats_by_hand():
    real = torch.tensor([[2.0, -1.0], [0.5, 3.0]])  # signs +1 -1 +1 +1 -> r_t = 0.5
    fake = torch.tensor([[-1.0, 1.0], [-2.0, -0.1]])  # 3 of 4 below 0
    s = sign_stats(real, fake)
    assert float(s["rt"]) == pytest.approx(0.5)
    assert float(s["d_accuracy"]) == pytest.approx((3 + 3) / 8)


def test_ema_distance_and_pairwise_distance_by_hand():
    a, b = torch.nn.Linear(2, 1, bias=False), torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[3.0, 4.0]]))  # G_ema: norm 5
        b.weight.copy_(torch.tensor([[3.0, 1.0]]))  # G: differs by (0, 3)
    assert ema_distance(b, a) == pytest.approx(3 / 5)
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])  # distances 5, 4, 3
    assert mean_pairwise_distance(f) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="N >= 2"):
        mean_pairwise_distance(f[:1])


def test_gradient_norm_signal_is_the_norm_of_all_gradients(tmp_path):
    trainer = build_from_spec(tiny_spec(tmp_path))
    logs = trainer.step()
    grads = [p.grad for p in trainer.core.d_params if p.grad is not None]
    want = torch.cat([g.flatten() for g in grads]).norm()
    assert float(logs["grad_norm_d"]) == pytest.approx(float(want), rel=1e-5)
    assert 0 < float(logs["grad_norm_g"]) < math.inf
    assert -1 <= float(logs["rt"]) <= 1


# ------------------------------------------------------------------ conditions, on records
def record(kimg, **values):
    return {"kimg": kimg, "bad_steps": 0, "loss_g": 1.0, "loss_d": 1.0, **values}


def test_each_condition_fires_at_its_threshold_and_not_before():
    spec = HealthSpec.model_validate(
        {"divergence": {"warmup_ticks": 2, "grad_factor": 10}, "overfitting": {"patience_kimg": 1}}
    )
    m = HealthMonitor(spec)
    assert m.check_tick(record(0.5, grad_norm_d=1.0)) == []
    assert m.check_tick(record(1.0, grad_norm_d=2.0)) == []
    assert m.check_tick(record(1.5, grad_norm_d=15.0)) == []  # 15 < 10 x median(1, 2)
    [f] = m.check_tick(record(2.0, grad_norm_d=100.0))
    assert f.condition == "divergence" and f.threshold == pytest.approx(20.0)
    [f] = m.check_tick(record(2.5, loss_d=2000.0))
    assert f.condition == "divergence" and "loss_d" in f.message
    [f] = m.check_tick(record(3.0, bad_steps=2))
    assert f.condition == "divergence" and f.value == 2

    # collapse: below the threshold from the start is an untrained G, not a collapse
    assert m.check_tick(record(3.5, diversity=0.1)) == [] and m.diversity_peak == 0.1
    assert m.check_tick(record(4.0, diversity=0.8)) == []
    assert m.check_tick(record(4.5, diversity=0.2)) == []  # patience 2
    [f] = m.check_tick(record(5.0, diversity=0.05))
    assert f.condition == "collapse" and f.value == pytest.approx(0.05)

    # overfitting: saturated for patience_kimg
    assert m.check_tick(record(6.0, rt=0.97)) == []
    assert m.check_tick(record(6.5, rt=0.99)) == []
    [f] = m.check_tick(record(7.0, rt=0.96))
    assert f.condition == "overfitting"
    assert m.check_tick(record(7.5, rt=0.5)) == []

    # metric_worse: three evaluations in a row, each worse than the one before
    assert [m.check_metric(v, k) for v, k in ((5.0, 1), (4.0, 2), (4.5, 3), (4.6, 4))] == [
        [],
        [],
        [],
        [],
    ]
    [f] = m.check_metric(4.7, 5)
    assert f.condition == "metric_worse"
    assert len(m.events) == 6


def test_monitor_state_round_trips_and_a_malformed_state_starts_afresh():
    m = HealthMonitor(HealthSpec())
    for k in range(6):
        m.check_tick(record(k, grad_norm_g=1.0 + k, diversity=0.9, rt=0.99))
    m.check_metric(3.0, 6)
    m.after_rollback(0.5, True)
    state = json.loads(json.dumps(m.state_dict()))
    again = HealthMonitor(HealthSpec())
    again.load_state_dict(state)
    assert again.state_dict() == m.state_dict()
    assert again.lr_scale == 0.5 and again.data_order == 1 and again.rollbacks == 1
    bad = HealthMonitor(HealthSpec())
    bad.load_state_dict({"rollbacks": "many", "grad_history": {"grad_norm_g": ["x"]}, "events": 3})
    assert bad.state_dict() == HealthMonitor(HealthSpec()).state_dict()


# ------------------------------------------------------------------ tiny runs
def test_signals_reach_log_and_plot_and_a_condition_warns(tmp_path):
    # Thresholds a tiny run crosses: any positive r_t for 8 images is "overfitting".
    spec = tiny_spec(
        tmp_path,
        "train.kimg=0.032",
        "health.overfitting.threshold=0.001",
        "health.overfitting.patience_kimg=0.008",
        "health.diversity_samples=8",
        "health.diversity_every=0.016",
        "train.snapshot_every=0.032",  # one checkpoint, at the end: the one read below
        "train.sample_every=0.032",
    )
    trainer = build_from_spec(spec)
    with pytest.warns(HealthWarning, match="overfitting"):
        run = trainer.fit(progress=False)
    rows = ticks(run)
    for key in ("rt", "d_accuracy", "logits_real", "logits_fake", "grad_norm_g", "grad_norm_d"):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert all("g_ema_distance" in r for r in rows)
    assert [r["kimg"] for r in rows if "diversity" in r] == [0.016, 0.032]
    assert (run / "plots" / "health.png").stat().st_size > 10_000
    fired = events(run)
    assert fired and all(e["condition"] == "overfitting" for e in fired)
    assert fired[0]["action"] == "warn" and fired[0]["value"] >= 0.001
    meta = load_checkpoint(find_checkpoints(run)[0]).meta
    assert meta["health"]["events"] == fired  # the checkpoint keeps the record


def test_divergence_stop_exits_3_with_one_line_and_a_checkpoint(tmp_path, capsys):
    code = main(
        [
            "train",
            "--preset",
            "minimal_cpu",
            "--no-progress",
            *[a for o in tiny_overrides(tmp_path) for a in ("--set", o)],
            "--set",
            "health.divergence.loss_limit=0.001",  # any loss "explodes"
            "--set",
            "health.divergence.action=stop",
        ]
    )
    assert code == HEALTH_EXIT_CODE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "divergence at kimg 0.008" in err[0], err
    [run] = tmp_path.glob("0*")
    assert load_checkpoint(find_checkpoints(run)[0]).meta["nimg"] == 8
    assert events(run)[0]["action"] == "stop"


class Collapsible(torch.nn.Module):
    """A generator that, once ``collapsed`` is set, makes one image whatever the latent."""

    def __init__(self, G):
        super().__init__()
        self.G, self.z_dim, self.c_dim = G, G.z_dim, G.c_dim
        self.img_resolution, self.img_channels = G.img_resolution, G.img_channels
        self.register_buffer("collapsed", torch.zeros((), dtype=torch.bool))

    def forward(self, z, c=None):
        return self.G(torch.where(self.collapsed, torch.zeros_like(z), z), c)


def test_collapse_is_seen_when_g_ema_starts_making_one_image(tmp_path):
    G = Collapsible(create("generators", "fastgan_lite", img_resolution=32, ngf=8))
    trainer = hand_built(tmp_path / "run", G=G)
    t, h = trainer.spec.train, trainer.spec.health
    t.tick = t.sample_every = t.snapshot_every = 0.008
    h.diversity_samples, h.diversity_every, h.collapse.patience = 16, 0.008, 1
    trainer.fit(kimg=0.016, progress=False)
    first = [r["diversity"] for r in ticks(trainer.run_dir) if "diversity" in r]
    assert len(first) == 2 and min(first) > 0.05
    h.collapse.threshold = min(first) / 2  # below what this G makes: no collapse so far
    assert events(trainer.run_dir) == []
    for g in (trainer.G, trainer.G_ema):
        g.collapsed.fill_(True)
    with pytest.warns(HealthWarning, match="collapse"):
        trainer.fit(kimg=0.024, progress=False)
    [fired] = events(trainer.run_dir)
    assert fired["condition"] == "collapse" and fired["kimg"] == 0.024
    assert fired["value"] < 1e-3 and fired["threshold"] == h.collapse.threshold


def test_metric_worse_rollback_lowers_lr_reorders_data_and_survives_resume(tmp_path):
    spec = tiny_spec(
        tmp_path,
        "train.kimg=0.032",
        "train.metrics_every=0.008",
        "health.metric_worse.evaluations=1",
        "health.metric_worse.action=rollback",
        "health.rollback.max=1",
        "health.rollback.to=healthy",
    )
    trainer = build_from_spec(spec)
    trainer.evaluate = Rising()
    lr = trainer.g_opt.param_groups[0]["lr"]
    stopped = pytest.raises(HealthStopped, match=r"metric_worse .*after 1 rollback")
    with stopped, pytest.warns(HealthWarning, match="rolled back to kimg 0.008"):
        trainer.fit(progress=False)
    run = trainer.run_dir
    [rollback] = events(run, "rollback")
    assert rollback["kimg"] == 0.008 and rollback["from_kimg"] == 0.016
    assert rollback["lr_scale"] == 0.5 and rollback["data_order"] == 1
    assert trainer.g_opt.param_groups[0]["lr"] == pytest.approx(lr * 0.5)
    assert trainer.d_opt.param_groups[0]["lr"] == pytest.approx(lr * 0.5)
    assert trainer.batches.seed != spec.train.seed
    kimgs = [r["kimg"] for r in ticks(run)]
    assert kimgs == [0.008, 0.016, 0.016, 0.024]  # back to 0.008, then on
    newest = load_checkpoint(find_checkpoints(run)[0])
    assert newest.meta["health"]["rollbacks"] == 1 and newest.meta["healthy"] is False

    resumed = Trainer.resume(run)
    assert resumed.health.rollbacks == 1 and resumed.health.lr_scale == 0.5
    assert resumed.g_opt.param_groups[0]["lr"] == pytest.approx(lr * 0.5)
    assert resumed.batches.seed == trainer.batches.seed
    assert resumed.health.events == trainer.health.events
