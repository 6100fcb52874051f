"""Experiment loggers: the same numbers in jsonl, TensorBoard and W&B; failures; plugins; spec.

TensorBoard events are read back with tensorboard's own EventAccumulator, and W&B's offline run
with `wandb leet inspect --json` (wandb's reader of its transaction log): what the loggers
really wrote, not what a mock was asked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import projected_gan
from projected_gan import ExperimentSpec, build_from_spec
from projected_gan.checkpoint import find_checkpoints, load_checkpoint
from projected_gan.cli import main as cli_main
from projected_gan.loggers import Logger, LoggerGroup, LoggerWarning, RunInfo, read_jsonl
from projected_gan.spec import SpecError
from projected_gan.training import Trainer
from projected_gan.training.run_log import build_loggers
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parent.parent


def tiny_spec(out_dir, *extra):
    return ExperimentSpec.load(preset="minimal_cpu", overrides=[*tiny_overrides(out_dir), *extra])


def ticks_of(run: Path) -> list[dict]:
    return [r for r in read_jsonl(run / "log.jsonl") if "event" not in r]


def tensorboard_events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def wandb_records(offline_run: Path) -> list[dict]:
    """The records of an offline W&B run, as wandb's own reader prints them."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(offline_run)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def wandb_history(records: list[dict]) -> list[dict]:
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def wandb_config(records: list[dict]) -> dict:
    config: dict = {}
    for r in records:
        for source in (r.get("config"), (r.get("run") or {}).get("config")):
            config.update((source or {}).get("update", {}))
    return config


@pytest.mark.slow  # a tiny run and its resume, with W&B's service started: ~1.4x a tiny run
def test_jsonl_tensorboard_and_wandb_record_the_same_run_and_resume_it(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (dev has it)")
    pytest.importorskip("wandb", reason="the wandb extra is not installed (dev has it)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))  # its logs, not ~/.cache
    spec = tiny_spec(
        tmp_path,
        "output.loggers=[jsonl, tensorboard, {name: wandb, project: pg-tests, tags: [tiny]}]",
        "train.metrics_every=0.008",
    )
    trainer = build_from_spec(spec)
    # A stand-in metric (metrics cost minutes): what is under test is where its values go.
    trainer.evaluate = lambda G: {"fd": 100.0 + trainer.nimg / 1000}
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoggerWarning)  # no logger may fail here
        run = trainer.fit(progress=False)

    ticks, metrics = ticks_of(run), read_jsonl(run / "metrics.jsonl")
    assert [t["kimg"] for t in ticks] == [0.008, 0.016]
    assert [m["fd"] for m in metrics] == [100.008, 100.016]
    keys = ("loss_g", "loss_d", "loss_d_real", "loss_d_fake", "lr_g", "lr_d")

    # TensorBoard: float32 scalars at step = images seen.
    tb = tensorboard_events(run)
    for key in keys:
        got = [(e.step, e.value) for e in tb.Scalars(f"train/{key}")]
        want = [(round(t["kimg"] * 1000), t[key]) for t in ticks]
        assert [s for s, _ in got] == [s for s, _ in want], key
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), key
    fd = tb.Scalars("metrics/fd")
    assert [e.step for e in fd] == [8, 16]
    assert [e.value for e in fd] == pytest.approx([100.008, 100.016], rel=1e-6)
    assert [e.step for e in tb.Images("samples/fakes")] == [0, 8, 16]
    assert [e.step for e in tb.Images("samples/reals")] == [0]

    # W&B, offline: the same values (JSON doubles, exact), the spec, the name and the id.
    run_id = (run / "wandb" / "run_id").read_text().strip()
    (first,) = sorted((run / "wandb").glob("offline-run-*"))
    records = wandb_records(first)
    header = next(r["run"] for r in records if r["type"] == "run")
    assert header["run_id"] == run_id and first.name.endswith(run_id)
    assert header["project"] == "pg-tests" and header["tags"] == ["tiny"]
    assert header["display_name"] == run.name
    config = wandb_config(records)
    described = trainer.spec.to_dict()  # the run's one spec, as the trainer describes it
    assert {k: config[k] for k in described} == described
    history = wandb_history(records)
    rows = [h for h in history if "train/loss_g" in h]
    assert [h["kimg"] for h in rows] == [t["kimg"] for t in ticks]
    for key in keys:
        assert [h[f"train/{key}"] for h in rows] == [t[key] for t in ticks], key
    assert [(h["kimg"], h["metrics/fd"]) for h in history if "metrics/fd" in h] == [
        (0.008, 100.008),
        (0.016, 100.016),
    ]
    fakes = [h for h in history if "samples/fakes.path" in h]
    assert [h["kimg"] for h in fakes] == [0, 0.008, 0.016]
    assert all((first / "files" / h["samples/fakes.path"]).is_file() for h in fakes)

    # Resume: the same W&B run id continues, from the checkpoint's kimg.
    resumed = Trainer.resume(run, overrides=["train.kimg=0.024"])
    resumed.fit(progress=False)
    assert (run / "wandb" / "run_id").read_text().strip() == run_id
    later = [p for p in (run / "wandb").glob("offline-run-*") if p != first]
    assert len(later) == 1 and later[0].name.endswith(run_id)
    records = wandb_records(later[0])
    header = next(r["run"] for r in records if r["type"] == "run")
    assert header["run_id"] == run_id and header.get("resume") is True
    rows = [h for h in wandb_history(records) if "train/loss_g" in h]
    last = ticks_of(run)[-1]
    assert last["kimg"] == 0.024
    assert [(h["kimg"], h["train/loss_g"]) for h in rows] == [(0.024, last["loss_g"])]
    assert tensorboard_events(run).Scalars("train/loss_g")[-1].step == 24


PLUGIN = {
    "pg_log_plugin.__init__": "",
    "pg_log_plugin.loggers": '''
        from projected_gan.loggers import Logger

        CALLS = []


        class Recorder(Logger):
            """Records every call it gets (a plugin logger)."""

            def __init__(self, label: str = "x"):
                self.label = label

            def start(self, run):
                CALLS.append(("start", run.run_dir, run.nimg, run.spec["output"]["dir"]))

            def log_scalars(self, values, nimg):
                CALLS.append(("scalars", dict(values), nimg))

            def log_images(self, images, nimg):
                CALLS.append(("images", {k: (v.shape, v.dtype) for k, v in images.items()}, nimg))

            def log_metrics(self, values, nimg):
                CALLS.append(("metrics", dict(values), nimg))

            def finish(self):
                CALLS.append(("finish",))


        class Broken(Logger):
            """Raises in every call, as a logger whose server is down."""

            def start(self, run):
                raise ConnectionError("network is down")

            def log_scalars(self, values, nimg):
                raise ConnectionError("network is down")

            log_images = log_metrics = log_scalars

            def finish(self):
                raise ConnectionError("network is down")
    ''',
}


def test_plugin_logger_gets_the_scalars_and_a_broken_one_only_warns(tmp_path, plugin_dist, capsys):
    plugin_dist(
        "pg-log-plugin",
        "0.1",
        PLUGIN,
        {
            "projected_gan.loggers": {
                "recorder": "pg_log_plugin.loggers:Recorder",
                "broken": "pg_log_plugin.loggers:Broken",
            }
        },
    )
    assert cli_main(["list", "loggers"]) == 0
    listed = capsys.readouterr().out
    assert "recorder  [plugin: pg-log-plugin 0.1]" in listed and "jsonl" in listed
    assert "pg_log_plugin.loggers" not in sys.modules  # listed without being imported

    spec = tiny_spec(tmp_path, "output.loggers=[{name: recorder, label: a}, broken]")
    trainer = build_from_spec(spec)
    assert [name for name, _ in trainer._loggers] == ["jsonl", "recorder", "broken"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = trainer.fit(progress=False)
    logger_warnings = [w for w in caught if issubclass(w.category, LoggerWarning)]
    assert len(logger_warnings) == 1, [str(w.message) for w in logger_warnings]
    message = str(logger_warnings[0].message)
    assert "'broken'" in message and "network is down" in message

    calls = sys.modules["pg_log_plugin.loggers"].CALLS
    assert calls[0] == ("start", run, 0, str(tmp_path)) and calls[-1] == ("finish",)
    scalars = [
        (values, nimg)
        for kind, values, nimg in (c for c in calls if len(c) == 3)
        if kind == "scalars"
    ]
    ticks = ticks_of(run)
    assert scalars == [(t, round(t["kimg"] * 1000)) for t in ticks]  # every value, exactly
    images = [c for c in calls if c[0] == "images"]
    grid = ((256, 256, 3), np.dtype("uint8"))  # 64 fakes of 32 px, as samples/*.png
    assert images[0] == ("images", {"reals": ((64, 64, 3), np.dtype("uint8"))}, 0)
    assert images[1:] == [("images", {"fakes": grid}, n) for n in (0, 8, 16)]

    # The run finished and its checkpoints are whole.
    ckpts = find_checkpoints(run)
    assert [load_checkpoint(c).meta["nimg"] for c in ckpts] == [16, 8]


class Counting(Logger):
    def __init__(self, fail_in: str) -> None:
        self.fail_in, self.calls = fail_in, []

    def _maybe_fail(self, method: str) -> None:
        self.calls.append(method)
        if method == self.fail_in:
            raise OSError(28, "No space left on device")

    def start(self, run):
        self._maybe_fail("start")

    def log_scalars(self, values, nimg):
        self._maybe_fail("log_scalars")

    def finish(self):
        self._maybe_fail("finish")


def test_logger_group_warns_once_and_keeps_calling_after_a_failed_log(tmp_path):
    flaky, fine = Counting("log_scalars"), Counting("nothing")
    group = LoggerGroup([("flaky", flaky), ("fine", fine)])
    with pytest.warns(LoggerWarning, match=r"'flaky' failed in log_scalars: OSError.*No space"):
        group.start(RunInfo(tmp_path, {}))
        for i in range(3):
            group.log_scalars({"kimg": i}, i)
        group.finish()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group2 = LoggerGroup([("flaky", flaky)])
        group2.start(RunInfo(tmp_path, {}, 8))
        group2.log_scalars({"kimg": 3}, 3)
    assert len(caught) == 1  # a new session reports again, once
    assert flaky.calls == ["start", *["log_scalars"] * 3, "finish", "start", "log_scalars"]
    assert fine.calls == ["start", *["log_scalars"] * 3, "finish"]


def test_logger_group_skips_a_logger_whose_start_failed_until_the_next_session(tmp_path):
    down = Counting("start")
    group = LoggerGroup([("down", down)])
    with pytest.warns(LoggerWarning, match="off for this session"):
        group.start(RunInfo(tmp_path, {}))
    group.log_scalars({"kimg": 1}, 1)
    group.finish()
    assert down.calls == ["start"]

    class Interrupted(Logger):
        def log_scalars(self, values, nimg):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is not a logger failure
        LoggerGroup([("i", Interrupted())]).log_scalars({}, 0)


def test_missing_wandb_exits_2_with_one_line_before_any_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails as if not installed
    argv = ["train", "--preset", "minimal_cpu", "--no-progress"]
    for override in [*tiny_overrides(tmp_path), "output.loggers=[jsonl, wandb]"]:
        argv += ["--set", override]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert 'pip install -e ".[wandb]"' in err and "wandb logger" in err
    assert not any(tmp_path.iterdir())  # refused before the run folder was made


def test_tensorboard_logger_writes_grey_grids(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (dev has it)")
    logger = projected_gan.create("loggers", "tensorboard")
    logger.start(RunInfo(tmp_path, {}))
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8, 1)
    logger.log_images({"fakes": grey}, 40)
    logger.finish()
    (event,) = tensorboard_events(tmp_path).Images("samples/fakes")
    assert (event.step, event.width, event.height) == (40, 8, 6)


# ------------------------------------------------------------------------------ the spec


def spec_problems(*overrides: str) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        ExperimentSpec.load(overrides=list(overrides))
    return info.value.problems


def test_output_loggers_in_the_spec():
    spec = ExperimentSpec.load(overrides=["output.loggers=tensorboard"])
    assert [p.name for p in spec.output.loggers] == ["tensorboard"]
    assert [p.name for p in ExperimentSpec().output.loggers] == ["jsonl"]
    spec = ExperimentSpec.load(
        overrides=["output.loggers=[{name: wandb, tags: [a], mode: offline}]"]
    )
    assert spec.output.loggers[0].kwargs == {"tags": ["a"], "mode": "offline"}
    assert "tensorboard" not in spec.to_dict()["output"]

    (problem,) = spec_problems("output.tensorboard=false")
    assert problem[0] == "output.tensorboard" and "output.loggers" in problem[1]
    (problem,) = spec_problems("output.loggers=[wandbb]")
    assert problem[0] == "output.loggers.0.name" and "did you mean 'wandb'" in problem[1]
    (problem,) = spec_problems("output.loggers=[jsonl, {name: wandb, projekt: x}]")
    assert problem[0] == "output.loggers.1.projekt" and "project" in problem[1]
    (problem,) = spec_problems("output.loggers=[tensorboard, tensorboard]")
    assert problem[0] == "output.loggers" and "more than once" in problem[1]


def test_a_refused_logger_argument_value_names_its_field():
    pytest.importorskip("wandb", reason="the wandb extra is not installed (dev has it)")
    spec = ExperimentSpec.load(overrides=["output.loggers=[{name: wandb, mode: onlin}]"])
    with pytest.raises(SpecError) as info:
        build_loggers(spec)
    (problem,) = info.value.problems
    assert problem[0] == "output.loggers.0.mode" and "offline" in problem[1]


def test_a_spec_with_output_tensorboard_is_refused_naming_output_loggers():
    old = ExperimentSpec().to_dict()
    old["output"] = {"dir": "runs", "name": None, "tensorboard": True}
    with pytest.raises(SpecError, match=r"output\.tensorboard: was replaced by output\.loggers"):
        ExperimentSpec.validate_dict(old)


def test_docs_logger_example_runs(capsys):
    page = (ROOT / "docs" / "logging.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "(Logger)" in b]
    namespace: dict = {}
    exec(compile(block, "docs/logging.md", "exec"), namespace)
    logger = namespace["PrintLosses"](every=2)
    for tick in range(3):
        logger.log_scalars({"tick": tick, "loss_g": 1.5, "loss_d": 0.25}, 8 * tick)
    assert capsys.readouterr().out.splitlines() == [
        "0 img: G 1.500 D 0.250",
        "16 img: G 1.500 D 0.250",
    ]
