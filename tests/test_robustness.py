"""Issue-11 failure modes not covered elsewhere: incompatible specs, plugins, unwritable logs."""

import subprocess
import sys
import warnings

import pytest
from PIL import Image

from projected_gan import ExperimentSpec, build_from_spec
from projected_gan.loggers import JsonlLogger, RunInfo
from projected_gan.spec import SpecError
from tests.conftest import tiny_overrides


def _flat_folder(path, n=20):
    path.mkdir()
    for i in range(n):
        Image.new("RGB", (40, 40), (i * 10 % 255, 80, 160)).save(path / f"img{i}.png")
    return path


def test_conditional_spec_on_unlabelled_data_is_rejected(tmp_path):
    data = _flat_folder(tmp_path / "flat")
    spec = ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[
            *tiny_overrides(tmp_path / "runs"),
            ("data.path", str(data)),
            "data.conditional=true",
        ],
    )
    with pytest.raises(SpecError, match=r"^data\.conditional:"):
        build_from_spec(spec)
    assert not (tmp_path / "runs").exists()  # rejected before any run folder was made


def test_cli_exit_2_for_unlabelled_conditional_data(tmp_path):
    data = _flat_folder(tmp_path / "flat")
    out = subprocess.run(
        [
            *(sys.executable, "-m", "projected_gan", "train", "--preset", "minimal_cpu"),
            *("--data", str(data), "--set", "data.conditional=true"),
            *("--set", f"output.dir={tmp_path / 'runs'}"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    assert "data.conditional" in out.stderr and "Traceback" not in out.stderr


def test_feature_maps_too_small_without_resize_are_rejected(tmp_path):
    spec = ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[
            *tiny_overrides(tmp_path),
            "data.resolution=32",
            "discriminator.feature_network.resize=never",
        ],
    )
    with pytest.raises(SpecError) as info:
        build_from_spec(spec)
    msg = str(info.value)
    assert msg.startswith("discriminator.feature_network:")
    assert "below 4" in msg and "resize" in msg


def test_missing_data_path_names_the_field(tmp_path):
    spec = ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[*tiny_overrides(tmp_path), ("data.path", str(tmp_path / "nope"))],
    )
    with pytest.raises(SpecError, match=r"^data\.path: .*nope"):
        build_from_spec(spec)


def test_broken_plugin_does_not_break_training_with_other_parts(plugin_dist, tmp_path):
    plugin_dist(
        "broken-plugin",
        "1.0",
        {"broken_pg.__init__": "", "broken_pg.nets": "raise RuntimeError('boom at import')\n"},
        {
            "projected_gan.feature_networks": {"bad_net": "broken_pg.nets:build"},
            "projected_gan.generators": {"bad_gen": "broken_pg.nets:G"},
        },
    )
    spec = ExperimentSpec.load(preset="minimal_cpu", overrides=tiny_overrides(tmp_path))
    trainer = build_from_spec(spec)
    logs = trainer.step()
    assert logs["loss_g"].isfinite()
    with pytest.raises(SpecError, match=r"generator\.name: .*boom at import"):
        ExperimentSpec.load(
            preset="minimal_cpu", overrides=[*tiny_overrides(tmp_path), "generator.name=bad_gen"]
        )


def test_unwritable_log_warns_once_and_continues(tmp_path):
    (tmp_path / "log.jsonl").mkdir()  # appending to a folder fails like a read-only file
    logger = JsonlLogger()
    logger.start(RunInfo(tmp_path, {}))
    with pytest.warns(UserWarning, match="could not write log.jsonl"):
        logger.log_scalars({"kimg": 0.1, "tick": 0, "loss_g": 1.0}, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger.log_scalars({"kimg": 0.2, "tick": 1, "loss_g": 0.9}, 200)  # no second warning
    logger.finish()  # draws the plots
    assert (tmp_path / "plots" / "losses.png").is_file()
