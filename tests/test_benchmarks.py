"""The benchmark scripts run end to end on CPU and write the promised JSON: the training
throughput, the one-step profile, and the GPU check's CPU dry run; ada_race's and recipes' runs
are valid specs and their tables read their results; variant_cost's variants are specs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
TINY = [
    "--preset",
    "minimal_cpu",
    "--device",
    "cpu",
    "--resolution",
    "32",
    "--batch",
    "4",
    "--set",
    "generator.ngf=8",
    "--set",
    "discriminator.feature_network.input_size=64",
    "--random-data",
    "--threads",
    "1",  # robust on a busy shared CPU
]


def _load_script():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_run_with_baseline_writes_json(tmp_path):
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(SCRIPT), *TINY, "--iters", "2", "--baseline", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "img/s" in proc.stdout and "speed-up" in proc.stdout
    assert "DiffAugment:" in proc.stdout and "ms/img" in proc.stdout

    r = json.loads(out.read_text())
    keys = ("img_per_s", "baseline_img_per_s", "peak_mem_bytes", "speedup", "flops_per_img")
    for key in (*keys, "augment_s_per_img"):
        assert r[key] > 0, key
    assert r["device"] == "cpu" and r["torch"] and r["date"]
    assert r["settings"]["batch"] == 4 and r["settings"]["resolution"] == 32
    assert r["baseline_settings"] == {**r["settings"], "channels_last": False, "compile": False}
    assert r["speedup"] == pytest.approx(r["img_per_s"] / r["baseline_img_per_s"])
    assert r["tflops"] == pytest.approx(r["flops_per_img"] * r["img_per_s"] / 1e12)
    assert r["s_per_kimg"] == pytest.approx(1000 / r["img_per_s"])
    assert len(r["run"]["step_s_each"]) == 2
    assert 0 < r["startup_s"] < 120
    assert r["spec"]["train"]["batch"] == 4 and r["spec"]["data"]["resolution"] == 32


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--iters", "0"], "--iters"),
        (["--warmup", "0"], "--warmup"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_arguments_name_the_flag(argv, names, capsys):
    bench = _load_script()
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert names in capsys.readouterr().err


def test_random_data_replaces_files_only_inside_the_block():
    from projected_gan.spec import ExperimentSpec
    from projected_gan.training import assemble

    bench = _load_script()
    spec = ExperimentSpec.load(preset="minimal_cpu", overrides=["data.resolution=32"])
    original = assemble.load_spec_dataset
    with bench.random_dataset(spec):
        ds = assemble.load_spec_dataset(spec)
        assert ds.images.shape[1:] == (3, 32, 32) and ds.source == "<random>"
        assert len(ds) >= spec.train.batch
    assert assemble.load_spec_dataset is original


def test_a_measured_trainer_is_freed_before_the_next_one_is_built():
    """The baseline's peak memory must not include the first configuration's weights."""
    import weakref

    import torch

    bench = _load_script()
    args = bench.parse_args(TINY)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as --threads 1: robust on a busy shared CPU
    try:
        trainer = bench.build_trainer(bench.make_spec(args), random_data=True)
        result = bench.measure(trainer, iters=1, warmup=1, t_start=0.0)
        assert result["img_per_s"] > 0 and result["startup_s"] > 0
        assert bench.count_step_flops(trainer) > 0
        alive = weakref.ref(trainer)
        device = trainer.device
        del trainer
        bench.release(device, compiled=False)
        assert alive() is None
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------ profile_step.py, gpu_check
BENCH = SCRIPT.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_splits_real_steps_into_every_phase():
    import torch

    profile = _load("profile_step")
    args = profile.parse_args([*TINY, "--steps", "1"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = profile.tt.build_trainer(profile.tt.make_spec(args), random_data=True)
        result = profile.profile_steps(trainer, steps=1, warmup=1)
    finally:
        torch.set_num_threads(threads)
    groups, phases = result["groups"], result["phases"]
    for group in ("G", "DiffAugment", "projector", "heads", "optimiser"):
        assert groups[group]["ms"] > 0, group
    # The G step's backward runs through the heads, the projector and DiffAugment into G.
    for phase in ("G", "heads", "feature network", "projection", "DiffAugment"):
        assert phases[f"{phase} forward"]["device_ms"] > 0, phase
        assert phases[f"{phase} backward"]["device_ms"] > 0, phase
    assert sum(g["share"] for g in groups.values()) == pytest.approx(1.0)
    assert sum(g["ms"] for g in groups.values()) == pytest.approx(result["step_ms"])
    # Hooks are removed afterwards: a later step records nothing more.
    assert not trainer.G._forward_hooks and not trainer.G._forward_pre_hooks


def test_gpu_check_stage_timeout_and_budget(tmp_path):
    gpu_check = _load("gpu_check")
    runner = gpu_check.Runner(budget_s=4, log=tmp_path / "log")
    sleeper = "import time; print('started', flush=True); time.sleep(60)"
    env = dict(os.environ)
    r = runner.run("sleeper", [sys.executable, "-c", sleeper], limit=1.5, min_s=0, env=env)
    assert r["status"] == "timeout" and r["wall_s"] < 30 and "started" in r["output_tail"]
    ok = runner.run("quick", [sys.executable, "-c", "pass"], limit=10, min_s=0, env=env)
    assert ok["status"] == "ok" and ok["rc"] == 0
    late = runner.run("late", [sys.executable, "-c", "pass"], limit=10, min_s=60, env=env)
    assert late["status"] == "skipped" and "budget" in late["why"]


def test_gpu_check_reads_junit_and_summarises_against_the_anchor(tmp_path):
    gpu_check = _load("gpu_check")
    xml = tmp_path / "t.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase name="test_a" time="1.5"/>'
        '<testcase name="test_b" time="0.1"><failure message="assert 1 == 2">trace</failure>'
        '</testcase><testcase name="test_c" time="0"><skipped message="no GPU"/></testcase>'
        "</testsuite></testsuites>"
    )
    parsed = gpu_check.parse_junit(xml)
    assert parsed["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert parsed["tests"][1]["message"].startswith("assert 1 == 2")
    # pytest killed at the stage's time limit writes no XML: its -v lines still tell.
    lines = "tests/test_cuda.py::test_a PASSED [ 8%]\ntests/test_cuda.py::test_b[x] FAILED [16%]\n"
    killed = gpu_check.parse_verbose(lines + "tests/test_cuda.py::test_c SKIPPED (no GPU) [24%]\n")
    assert killed["counts"] == parsed["counts"]
    assert [t["test"] for t in killed["tests"]] == ["test_a", "test_b[x]", "test_c"]

    def row(config, img_per_s):
        return {
            "preset": "fastgan_lite_256",
            "config": config,
            "status": "ok",
            "img_per_s": img_per_s,
            "peak_mem_gib": 12.85,
        }

    summary = gpu_check.summarise([row("baseline", 100.0), row("compile", 600.0)])
    lite = summary["fastgan_lite_256"]
    assert lite["compile"]["x_our_baseline"] == 6.0 and lite["best"] == "compile"
    assert lite["compile"]["x_official"] == pytest.approx(600 / 118, abs=1e-3)
    assert lite["compile"]["mem_vs_official"] == pytest.approx(0.5)
    assert lite["meets_target"] is True  # 600 >= 590
    assert "fastgan_256" not in summary


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["--stages", "tests,bogus"], "--stages"), (["--configs", "fp16"], "--configs")],
)
def test_gpu_check_bad_arguments_name_the_flag(argv, flag, capsys):
    gpu_check = _load("gpu_check")
    with pytest.raises(SystemExit):
        gpu_check.parse_args(argv)
    assert flag in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_check_dry_run_prints_one_json_with_every_stage(tmp_path):
    """The whole script on the CPU at tiny size (~2-4 minutes on 2 busy cores)."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    env.pop("PROJECTED_GAN_CUDA_TESTS_ON_CPU", None)
    script = BENCH / "gpu_check.sh"
    proc = subprocess.run(
        ["bash", str(script), "--dry-run"], capture_output=True, text=True, timeout=1200, env=env
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((tmp_path / "gpu_check.json").read_text())
    printed = proc.stdout.split("===== gpu_check JSON =====\n", 1)[1]
    assert json.loads(printed.rsplit("[gpu_check] wrote", 1)[0]) == r
    assert (tmp_path / "gpu_check.log").stat().st_size > 0

    assert r["mode"].startswith("dry-run") and r["elapsed_s"] < r["budget_s"]
    assert r["deps"]["status"] == "ok" and r["deps"]["missing"] == []
    assert {q["name"] for q in r["deps"]["requirements"]} >= {"torch", "pydantic", "timm"}
    assert r["machine"]["torch"] and r["machine"]["cuda_available"] is False

    tests = r["cuda_tests"]  # no GPU here: every cuda test collected, every one skipped
    assert tests["status"] == "ok" and tests["counts"] == {"skipped": len(tests["tests"])}
    assert len(tests["tests"]) >= 10

    runs = {row["config"]: row for row in r["throughput"]}
    assert set(runs) == {"baseline", "tf32", "default", "compile"}
    for config, row in runs.items():
        assert row["status"] == "ok" and row["preset"] == "fastgan_lite_256", row
        for key in ("img_per_s", "s_per_kimg", "peak_mem_bytes", "startup_s", "tflops"):
            assert row[key] > 0, (config, key)
        assert row["settings"]["compile"] is (config == "compile")
    assert runs["compile"]["compile_warmup_s"] >= 0
    assert runs["compile"]["settings"]["compile_backend"] == "eager"
    assert runs["baseline"]["compile_warmup_s"] is None
    assert runs["baseline"]["settings"]["precision"] == "fp32"
    lite = r["summary"]["fastgan_lite_256"]
    assert lite["baseline"]["x_our_baseline"] == 1.0 and lite["best"] in runs

    profile = r["profile"]
    assert profile["status"] == "ok" and profile["step_ms"] > 0
    assert {"G", "DiffAugment", "projector", "heads", "optimiser"} <= set(profile["groups"])
    assert "| fastgan_lite_256 | compile |" in r["table_md"]


# ------------------------------------------------------------------------------- ada_race.py
def test_ada_race_arms_are_specs_and_the_table_reads_the_results(tmp_path, capsys):
    from projected_gan.spec import ExperimentSpec

    race = _load("ada_race")
    args = race.parse_args(["train", "--sizes", "16", "--seeds", "0", "--out", str(tmp_path)])
    assert args.arms == ["fixed", "adaptive"] and args.kimg == 5.0 and args.ada_speed == 2.0
    augment = {}
    for arm in race.ARMS:
        overrides = race.run_overrides(16, 0, arm, tmp_path / arm, args)
        spec = ExperimentSpec.load(preset="minimal_cpu", overrides=overrides)
        assert spec.data.max_images == 16 and spec.train.kimg == 5.0
        augment[arm] = spec.discriminator.augment
    assert augment["fixed"].name == "diffaugment"
    assert augment["adaptive"].name == "adaptive"
    assert augment["adaptive"].kwargs["speed_kimg"] == 2.0
    assert augment["adaptive"].kwargs["policy"] == augment["fixed"].kwargs["policy"]

    results = [("fixed", 0, 10.0, 100.0, None), ("fixed", 1, 12.0, 110.0, None)]
    results += [("adaptive", 0, 9.0, 90.0, 0.25)]
    for arm, seed, fid, fd, p in results:
        run = tmp_path / f"n16-{arm}-s{seed}" / "00000-run"
        run.mkdir(parents=True)
        record = {"size": 16, "arm": arm, "seed": seed, "kimg": 5.0, "fid": fid, "fd": fd}
        (run / race.RESULT).write_text(json.dumps({**record, "augment_p": p}))
    rows = race.table(race.parse_args(["table", "--out", str(tmp_path)]))
    out = capsys.readouterr().out
    assert "| 16 | fixed | 5 | 2 | 11.0 ± 1.4 | 105.0 ± 7.1 | - | s0:10.0 s1:12.0 |" in out
    assert "| 16 | adaptive | 5 | 1 | 9.0 | 90.0 | 0.250 | s0:9.0 | s0:90.0 | s0:0.250 |" in out
    assert [r["arm"] for r in rows] == ["fixed", "adaptive"]
    # grids pairs the arms of one seed: seed 1 has no adaptive run, so nothing is drawn
    dest = tmp_path / "grids"
    grids = race.parse_args(["grids", "--out", str(tmp_path), "--seed", "1", "--dest", str(dest)])
    assert grids.samples == 16 and race.grids(grids) == [] and not dest.exists()


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["--arms", "fixed,nope"], "--arms"), (["--sizes", "1"], "--sizes")],
)
def test_ada_race_bad_arguments_name_the_flag(argv, flag, capsys):
    race = _load("ada_race")
    with pytest.raises(SystemExit):
        race.parse_args(["train", *argv])
    assert flag in capsys.readouterr().err


# ------------------------------------------------------------------------------- recipes.py
def test_recipes_are_specs_and_the_table_pairs_seeds_with_official(tmp_path, capsys):
    from projected_gan.spec import ExperimentSpec

    recipes = _load("recipes")
    args = recipes.parse_args(["train", "--seeds", "0", "--out", str(tmp_path)])
    assert args.recipes == list(recipes.RECIPE_NAMES) and args.kimg == 1.0
    specs = {
        name: ExperimentSpec.load(
            preset="minimal_cpu", overrides=recipes.run_overrides(name, 0, tmp_path / name, args)
        )
        for name in recipes.RECIPE_NAMES
    }
    assert specs["official"].discriminator.augment.name == "diffaugment"
    assert specs["official"].loss.name == "hinge" and specs["official"].loss.r1_gamma == 0
    assert specs["diffusion"].discriminator.augment.name == "diffusion"
    assert specs["san"].discriminator.discriminator.kwargs == {"san": True}
    rp = specs["rpgan"].loss
    assert (rp.name, rp.r1_gamma, rp.r2_gamma, rp.penalty_interval) == ("rpgan", 1.0, 1.0, 4)
    both = specs["combined"]
    assert both.discriminator.augment.name == "diffusion" and both.loss == rp
    assert both.discriminator.discriminator.kwargs == {"san": True}

    for recipe, seed, fid, kid in [("official", 0, 10.0, 0.002), ("official", 1, 12.0, 0.004)]:
        run = tmp_path / f"{recipe}-s{seed}" / "00000-run"
        run.mkdir(parents=True)
        record = {"recipe": recipe, "seed": seed, "kimg": 1.0, "fid": fid, "kid": kid}
        (run / recipes.RESULT).write_text(json.dumps({**record, "sec_per_kimg": 100.0}))
    run = tmp_path / "san-s1" / "00000-run"
    run.mkdir(parents=True)
    record = {"recipe": "san", "seed": 1, "kimg": 1.0, "fid": 11.0, "kid": 0.001}
    (run / recipes.RESULT).write_text(json.dumps({**record, "sec_per_kimg": None}))
    rows = recipes.table(recipes.parse_args(["table", "--out", str(tmp_path)]))
    out = capsys.readouterr().out
    assert [r["recipe"] for r in rows] == ["official", "san"]
    assert rows[1]["fid_minus_official"] == [-1.0]  # paired on seed 1 only
    assert rows[1]["kid1000_minus_official"] == pytest.approx([-3.0])
    assert "| official | 1 | 2 | 11.0 ± 1.4 | 3.0 ± 1.4 | 100 ± 0 | - | - |" in out


def test_recipes_read_seconds_per_kimg_from_the_run_log(tmp_path):
    recipes = _load("recipes")
    lines = [{"tick": 0, "sec_per_kimg": 500.0}, {"tick": 1, "sec_per_kimg": 100.0}]
    lines += [{"tick": 2, "sec_per_kimg": 120.0}]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken")
    assert recipes.seconds_per_kimg(tmp_path) == pytest.approx(110.0)  # first tick left out
    assert recipes.seconds_per_kimg(tmp_path / "missing") is None


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["--recipes", "official,nope"], "--recipes"),
        (["--kimg", "0"], "--kimg"),
        (["--penalty-interval", "0"], "--penalty-interval"),
    ],
)
def test_recipes_bad_arguments_name_the_flag(argv, flag, capsys):
    recipes = _load("recipes")
    with pytest.raises(SystemExit):
        recipes.parse_args(["train", *argv])
    assert flag in capsys.readouterr().err


def test_variant_cost_variants_are_specs():
    from projected_gan.spec import ExperimentSpec

    cost = _load("variant_cost")
    for name, overrides in cost.VARIANTS.items():
        spec = ExperimentSpec.load(preset="minimal_cpu", overrides=list(overrides))
        assert spec.loss.name in ("hinge", "nonsaturating", "rpgan"), name
    with pytest.raises(SystemExit):
        cost.parse_args(["--variants", "nope"])


# ------------------------------------------------------------------------------- health.py
def test_health_scenarios_are_specs_and_the_turn_and_lag_are_read_from_the_curves(tmp_path):
    from projected_gan.spec import ExperimentSpec

    health = _load("health")
    args = health.parse_args(["run", "--out", str(tmp_path), "--set", "train.batch=8"])
    for scenario in health.SCENARIOS:
        for arm in health.ARMS:
            spec = ExperimentSpec.load(
                preset="minimal_cpu", overrides=health.overrides(scenario, arm, 1, args)
            )
            assert spec.train.seed == 1 and spec.train.batch == 8
            assert spec.health.collapse.action == health.ARMS[arm]
    assert (
        ExperimentSpec.load(
            preset="minimal_cpu", overrides=health.overrides("no_aug_100", "watch", 0, args)
        ).discriminator.augment
        is None
    )
    # A mid-run break is resumed with its overrides: they must be valid and not architecture
    from projected_gan.training.state import ARCHITECTURE_FIELDS

    for scenario, extra in health.BREAKS.items():
        base = health.overrides(scenario, "watch", 0, args)
        ExperimentSpec.load(preset="minimal_cpu", overrides=[*base, *extra])
        keys = [o.split("=")[0] for o in extra]
        assert not [k for k in keys for f in ARCHITECTURE_FIELDS if k.startswith(f)], scenario

    # FD falls to 80 at 1.0 kimg, then rises for good: the turn is there, not at the dip at 0.5
    curve = [(0.25, 100.0), (0.5, 90.0), (0.75, 95.0), (1.0, 80.0), (1.25, 85.0), (1.5, 120.0)]
    assert health.turn_point(curve, 0.1) == (1.0, 80.0)
    assert health.turn_point(curve[:4], 0.1) is None  # still falling at the end
    fired = {"event": "health", "condition": "overfitting", "kimg": 1.5}
    watch = {"scenario": "d_lr_x20", "seed": 0, "events": [fired], "fd_curve": curve}
    rollback = {"events": [{"event": "rollback", "kimg": 1.0}], "fd_curve": [(1.5, 70.0)]}
    row = health.summarise(watch, {**rollback, "exit": 0}, 0.1)
    assert row["fired"] == "overfitting@1.5" and row["lag_kimg"] == 0.5
    assert row["fd_at_firing"] == 120.0 and row["rollback_fd_end"] == 70.0
    assert row["rollbacks"] == 1


def test_health_replay_reads_a_watch_runs_log_with_other_thresholds(tmp_path):
    health = _load("health")
    run = tmp_path / "d_lr_x20" / "watch" / "0" / "00000-run"
    run.mkdir(parents=True)
    records = [{"kimg": round(0.2 * i, 3), "rt": 0.99, "bad_steps": 0} for i in range(1, 6)]
    records.insert(2, {"event": "metrics", "kimg": 0.4, "fd": 100.0})
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    args = ["replay", "--out", str(tmp_path), "--health", "overfitting.patience_kimg=0.4"]
    assert health.main(args) == {"d_lr_x20/watch/0": {"overfitting": 0.6}}
    args[-1] = "overfitting.patience_kimg=5"  # the default 2 kimg would not fire either
    assert health.main(args) == {"d_lr_x20/watch/0": {}}
