"""The ``projected-gan`` command line: help, list, describe, train, generate, interpolate, eval."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_overrides


def cli(*args, timeout=600, env=None):
    return subprocess.run(
        [sys.executable, "-m", "projected_gan", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def run_main(capsys, *args):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from projected_gan.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse exits for --help and usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_for_every_command(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for command in ("list", "describe", "train", "generate", "interpolate", "eval"):
        assert command in out
        assert run_main(capsys, command, "--help")[0] == 0
    assert "--metrics" in run_main(capsys, "eval", "--help")[1]


def test_usage_errors_exit_2(capsys):
    assert run_main(capsys, "frobnicate")[0] == 2
    assert run_main(capsys, "list", "gizmos")[0] == 2
    code, _, err = run_main(capsys, "describe", "generators", "fastgun")
    assert code == 2 and "did you mean 'fastgan'" in err
    # The console script itself (a real process) agrees.
    assert cli("describe", "generators", "fastgun").returncode == 2


def test_list_and_describe(capsys):
    code, out, _ = run_main(capsys, "list")
    assert code == 0
    for name in ("fastgan_lite", "tf_efficientnet_lite0", "ccm_csm", "multiscale", "hinge", "fd"):
        assert name in out
    code, out, _ = run_main(capsys, "describe", "generators", "fastgan_lite")
    assert code == 0
    assert "ngf = 128" in out and "z_dim = 256" in out and "built-in" in out


def test_list_shows_summaries_and_aliases(capsys):
    code, out, _ = run_main(capsys, "list", "losses")
    assert code == 0
    line = next(x for x in out.splitlines() if x.strip().startswith("nonsaturating"))
    assert "Non-saturating logistic loss" in line and "(alias: logistic)" in line


def test_describe_shows_what_each_argument_means(capsys):
    code, out, _ = run_main(capsys, "describe", "discriminators", "multiscale")
    assert code == 0
    lines = out.splitlines()
    i = next(k for k, x in enumerate(lines) if x.strip().startswith("norm = "))
    assert "official" in lines[i + 1]  # the docstring's sentence for `norm`, under its default


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cli_runs")
    args = ["train", "--preset", "minimal_cpu", "--no-progress"]
    for o in tiny_overrides(out_dir):
        args += ["--set", o]
    result = cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list(out_dir.iterdir())
    assert len(runs) == 1
    return runs[0]


def test_generate_grid_and_files_are_reproducible(trained_run, tmp_path):
    out = cli(
        "generate",
        str(trained_run),
        "--seeds",
        "0-3,7",
        "--grid",
        str(tmp_path / "g.png"),
        "--outdir",
        str(tmp_path / "each"),
    )
    assert out.returncode == 0, out.stderr
    # The grid and the 5 files: 6 paths written, 3 named, the rest counted.
    assert "wrote 6 file(s): " in out.stdout and "(+3 more)" in out.stdout, out.stdout
    grid = Image.open(tmp_path / "g.png")
    assert grid.size == (3 * 32, 2 * 32)  # 5 images -> 2 rows of 3
    files = sorted(p.name for p in (tmp_path / "each").iterdir())
    assert files == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png", "seed0007.png"]
    again = cli("generate", str(trained_run), "--seeds", "7", "--outdir", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    a = np.asarray(Image.open(tmp_path / "each" / "seed0007.png"))
    b = np.asarray(Image.open(tmp_path / "again" / "seed0007.png"))
    assert np.array_equal(a, b)  # a seed is a picture, whatever else is generated with it
    assert cli("generate", str(trained_run), "--seeds", "0").returncode == 2  # nowhere to write


def test_interpolate_gif(trained_run, tmp_path):
    out = cli(
        "interpolate",
        str(trained_run),
        str(tmp_path / "walk.gif"),
        "--seeds",
        "1,2",
        "--frames",
        "4",
    )
    assert out.returncode == 0, out.stderr
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames >= 4 and gif.size == (32, 32)


def test_eval_fd_writes_json_and_fid_with_missing_weights_explains(trained_run, tmp_path):
    out = cli(
        "eval",
        str(trained_run),
        "--metrics",
        "fd",
        "--num",
        "64",
        "--batch",
        "32",
        "--json",
        str(tmp_path / "m.json"),
    )
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["fd"] > 0 and "fd" in out.stdout
    missing = str(tmp_path / "missing-inception.pth")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PROJECTED_GAN_INCEPTION_WEIGHTS=missing)
    out = cli("eval", str(trained_run), "--metrics", "fid", "--num", "16", env=env)
    assert out.returncode == 2  # an install problem, said in one line: not a crash
    assert "Inception" in out.stderr and missing in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_only_input_errors_exit_2_bugs_keep_their_traceback(capsys, monkeypatch):
    import projected_gan.commands as commands
    from projected_gan.cli import main
    from projected_gan.data import DataError
    from projected_gan.errors import UsageError

    def raising(exc):
        def command(*args, **kwargs):
            raise exc

        return command

    argv = ["generate", "run", "--grid", "g.png"]
    for exc in (UsageError("bad flag", field="--seeds"), DataError("no images")):
        monkeypatch.setattr(commands, "generate", raising(exc))
        code, _, err = run_main(capsys, *argv)
        assert code == 2 and str(exc) in err
    monkeypatch.setattr(commands, "generate", raising(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):
        main(argv)
    # For real: bad seeds are a usage error, named.
    monkeypatch.undo()
    code, _, err = run_main(capsys, "generate", "nowhere", "--seeds", "3-1", "--grid", "g.png")
    assert code == 2 and "seeds" in err


def test_eval_reproduces_the_score_logged_in_training(tmp_path):
    """One generation path: same latents, same precision (bf16 here) in training and eval."""
    from projected_gan import ExperimentSpec, build_from_spec
    from projected_gan.commands import evaluate_checkpoint

    extra = [
        "train.kimg=0.004",
        "train.precision=bf16",
        "metrics.names=[fd]",
        "metrics.num_images=16",
        "train.metrics_every=0.004",
    ]
    spec = ExperimentSpec.load(preset="minimal_cpu", overrides=[*tiny_overrides(tmp_path), *extra])
    run = build_from_spec(spec).fit(progress=False)
    logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged["kimg"] == 0.004
    again = evaluate_checkpoint(str(run), metrics="fd", num=16)
    assert again["fd"] == pytest.approx(logged["fd"], rel=1e-5)
    fp32 = evaluate_checkpoint(str(run), metrics="fd", num=16, precision="fp32")
    # --precision is honoured: fp32 fakes give another number (at initialisation FD is dominated
    # by the mean gap, so the change is small, but it is there).
    assert fp32["fd"] != logged["fd"]
