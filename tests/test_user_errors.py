"""What a new user trips on: exit codes, part construction errors, policy typos, the feature
network contract, metrics at kimg 0, plain progress lines, presets in ``train --help``."""

import json

import pytest
import torch
from torch import nn

import projected_gan
from projected_gan import ExperimentSpec, build_from_spec
from projected_gan.discriminators import ProjectedDiscriminator
from projected_gan.errors import PartBuildError
from projected_gan.projectors import FeatureNetwork, FeatureNetworkContractError
from projected_gan.spec import SpecError
from tests.conftest import tiny_overrides


def run_main(capsys, *args):
    from projected_gan.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_exit_2(code, err):
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------- exit codes
def test_paths_that_are_no_run_exit_2_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "generate", "runs/nope", "--grid", "g.png")
    one_line_exit_2(code, err)
    assert "runs/nope" in err
    (tmp_path / "not_a_run").mkdir()
    code, _, err = run_main(capsys, "train", "--resume", str(tmp_path / "not_a_run"))
    one_line_exit_2(code, err)
    assert "not_a_run" in err


# ----------------------------------------------------------------- a part that refuses
RAISING = {
    "raising_pg.__init__": "",
    "raising_pg.nets": """
        def build(width: int = 8, pretrained: bool = False):
            '''A plugin feature network that checks its width.'''
            if width <= 0:
                raise RuntimeError(f"width must be positive, got {width}")
            raise AssertionError("not reached in these tests")
    """,
}


def test_a_plugin_refusing_its_arguments_is_named_with_field_and_distribution(
    plugin_dist, capsys, tmp_path
):
    plugin_dist(
        "raising-plugin",
        "2.1",
        RAISING,
        {"projected_gan.feature_networks": {"picky_net": "raising_pg.nets:build"}},
    )
    with pytest.raises(PartBuildError) as info:
        projected_gan.create("feature_networks", "picky_net", width=-3)
    message = str(info.value)
    assert "picky_net" in message and "raising-plugin 2.1" in message
    assert "width must be positive, got -3" in message and "width=-3" in message
    assert isinstance(info.value.__cause__, RuntimeError)  # the original stays chained

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "discriminator:\n  feature_network: {name: picky_net, width: -3}\n"
        f"output:\n  dir: {tmp_path / 'runs'}\n"
    )
    code, _, err = run_main(capsys, "train", str(spec), "--dry-run")
    assert code == 2 and "Traceback" not in err
    assert "discriminator.feature_network:" in err and "raising-plugin 2.1" in err
    assert "width must be positive, got -3" in err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------- policy typos
def test_policy_typo_is_reported_under_its_field_and_refused_by_a_dry_run(capsys):
    typo = "discriminator.augment.policy=color,translatoin"
    with pytest.raises(SpecError) as info:
        ExperimentSpec.load(preset="minimal_cpu", overrides=[typo])
    assert info.value.field == "discriminator.augment.policy"
    assert "translatoin" in str(info.value) and "translation" in str(info.value)
    argv = ["train", "--preset", "minimal_cpu", "--set", typo, "--dry-run"]
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and "discriminator.augment.policy" in err and "Traceback" not in err
    assert out == ""  # no spec printed as if it were fine


def test_dry_run_checks_part_argument_values(capsys):
    code, _, err = run_main(
        capsys, "train", "--preset", "minimal_cpu", "--set", "generator.ngf=-3", "--dry-run"
    )
    assert code == 2 and "generator" in err and "ngf" in err and "Traceback" not in err
    code, out, _ = run_main(capsys, "train", "--preset", "minimal_cpu", "--dry-run")
    assert code == 0 and "fastgan_lite" in out


# ------------------------------------------------------------- feature network contract
class Declares8Gives4(FeatureNetwork):
    """A feature network whose declared channels disagree with what it returns."""

    channels = (8,)
    reductions = (2,)

    def __init__(self) -> None:
        super().__init__(input_size=None, resize="never")
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.freeze()

    def forward_features(self, x):
        return [self.conv(x)]


def test_plain_module_as_feature_network_states_the_contract():
    with pytest.raises(FeatureNetworkContractError) as info:
        ProjectedDiscriminator(feature_network=nn.Conv2d(3, 3, 1), img_resolution=32)
    message = str(info.value)
    for word in ("FeatureNetwork", "channels", "reductions", "forward_features", "freeze"):
        assert word in message
    assert info.value.field == "feature_network"


def test_wrong_channels_are_caught_when_the_discriminator_is_built():
    with pytest.raises(FeatureNetworkContractError, match=r"declares channels=\(8,\)") as info:
        ProjectedDiscriminator(feature_network=Declares8Gives4(), img_resolution=32)
    assert "(4,)" in str(info.value)
    # The same network declaring what it returns is accepted and runs.
    good = Declares8Gives4()
    good.channels = (4,)
    D = ProjectedDiscriminator(feature_network=good, projection_head=None, img_resolution=32)
    assert D(torch.zeros(2, 3, 32, 32)).shape[0] == 2


# -------------------------------------------------------- metrics at start, plain ticks
def test_presets_say_whether_metrics_run_at_kimg_0():
    assert ExperimentSpec.preset("minimal_cpu").metrics.at_start is False
    for name in ("fastgan_256", "fastgan_lite_256", "stylegan2_256"):
        assert ExperimentSpec.preset(name).metrics.at_start is True


@pytest.mark.slow
def test_fit_honours_at_start_and_prints_plain_ticks_when_not_a_terminal(tmp_path, capsys):
    kimgs = {}
    for at_start in (True, False):
        spec = ExperimentSpec.load(
            preset="minimal_cpu",
            overrides=[
                *tiny_overrides(tmp_path / str(at_start)),
                "metrics.names=[fd]",
                "metrics.num_images=8",
                "metrics.feature_network=tf_efficientnet_lite0",
                f"metrics.at_start={str(at_start).lower()}",
            ],
        )
        run = build_from_spec(spec).fit(progress=True)
        lines = (run / "metrics.jsonl").read_text().splitlines()
        kimgs[at_start] = [json.loads(line)["kimg"] for line in lines]
    assert kimgs[True][0] == 0 and kimgs[True][1:] == kimgs[False]
    assert kimgs[False] and all(k > 0 for k in kimgs[False])
    out = capsys.readouterr()
    ticks = [line for line in out.out.splitlines() if line.startswith("kimg ")]
    assert len(ticks) == 4  # 2 ticks per run (tick=0.008, kimg=0.016), one plain line each
    assert all("img/s" in t and " G " in f" {t} " and " D " in t for t in ticks)
    assert "\r" not in out.out and "\r" not in out.err  # no bar redraws


def test_train_help_lists_the_presets(capsys):
    code, out, _ = run_main(capsys, "train", "--help")
    assert code == 0
    for name in ("minimal_cpu", "fastgan_lite_256", "stylegan2_256"):
        assert name in out
