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
    assert out.returncode == 1
    assert "Inception" in out.stderr and missing in out.stderr and "Traceback" not in out.stderr
