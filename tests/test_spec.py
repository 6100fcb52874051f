"""The experiment spec: validation messages, files, presets, overrides, fuzzing."""

import json
import random
import subprocess
import sys

import pytest
import yaml

from projected_gan.spec import ExperimentSpec, SpecError, apply_overrides, list_presets


def problems(raw):
    with pytest.raises(SpecError) as info:
        ExperimentSpec.validate_dict(raw)
    return str(info.value)


def test_defaults_are_valid_and_round_trip(tmp_path):
    spec = ExperimentSpec()
    spec.check()
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"spec{suffix}"
        if suffix == ".json":
            path.write_text(json.dumps(spec.to_dict()))
        else:
            spec.save(path)
        again = ExperimentSpec.from_file(path)
        assert again == spec


def test_misspelled_part_names_field_and_suggestion():
    msg = problems({"generator": {"name": "fastgun"}})
    assert "generator.name: 'fastgun' is not a registered generator; did you mean 'fastgan'" in msg
    msg = problems({"discriminator": {"feature_network": {"name": "tf_efficientnet_lite9"}}})
    assert msg.startswith("discriminator.feature_network.name:")


def test_unknown_fields_and_part_arguments_are_named():
    msg = problems({"train": {"bach": 4}})
    assert "train.bach: unknown field; did you mean 'batch'?" in msg
    msg = problems({"generator": {"name": "fastgan_lite", "ngff": 32}})
    assert "generator.ngff: 'fastgan_lite' has no argument 'ngff'" in msg and "ngf" in msg
    msg = problems({"generator": {"name": "fastgan_lite", "img_resolution": 32}})
    assert "generator.img_resolution: is set by the pipeline itself" in msg


@pytest.mark.parametrize(
    "raw, where",
    [
        ({"train": {"batch": 0}}, "train.batch"),
        ({"train": {"batch": "many"}}, "train.batch"),
        ({"data": {"resolution": 100}}, "data.resolution"),
        ({"data": {"resolution": 8}}, "data.resolution"),
        ({"optim": {"lr": 0}}, "optim.lr"),
        ({"optim": {"d_lr": -1e-4}}, "optim.d_lr"),
        ({"train": {"precision": "fp8"}}, "train.precision"),
        ({"train": {"device": "tpu"}}, "train.device"),
        ({"loss": {"name": "hinj"}}, "loss.name"),
        ({"metrics": {"names": ["fdd"]}}, "metrics.names.0"),
    ],
)
def test_bad_values_are_rejected_with_the_field_path(raw, where):
    assert where in problems(raw)


def test_per_network_lr_overrides_are_used():
    spec = ExperimentSpec.validate_dict({"optim": {"lr": 1e-3, "d_lr": 5e-4}})
    assert spec.optim.generator_lr == 1e-3
    assert spec.optim.discriminator_lr == 5e-4


def test_presets_load_and_overrides_parse_types():
    assert {"minimal_cpu", "fastgan_lite_256", "fastgan_256", "stylegan2_256"} <= set(
        list_presets()
    )
    for name in list_presets():
        ExperimentSpec.preset(name)
    spec = ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[
            "train.batch=6",
            "data.mirror=false",
            "optim.betas=[0.5, 0.9]",
            ("data.path", "/some/folder"),
        ],
    )
    assert spec.train.batch == 6 and spec.data.mirror is False
    assert spec.optim.betas == (0.5, 0.9)
    assert spec.data.path == "/some/folder"
    with pytest.raises(SpecError, match="--set: expected KEY=VALUE"):
        apply_overrides({}, ["train.batch"])
    with pytest.raises(
        SpecError, match="'minimal_gpu' is not a preset; did you mean 'minimal_cpu'"
    ):
        ExperimentSpec.preset("minimal_gpu")


def test_bad_files(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        ExperimentSpec.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        ExperimentSpec.from_file(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        ExperimentSpec.from_file(listy)


def test_cli_spec_error_exits_2_without_traceback():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "projected_gan",
            "train",
            "--preset",
            "minimal_cpu",
            "--set",
            "generator.name=fastgun",
            "--set",
            "train.bach=3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "generator.name: 'fastgun' is not a registered generator" in out.stderr
    assert "train.bach: unknown field" in out.stderr
    assert "Traceback" not in out.stderr


def _mutate(raw: dict, rng: random.Random) -> dict:
    """One random edit of a valid spec: drop, retype, or invent a field somewhere."""
    raw = json.loads(json.dumps(raw))
    path = []
    node = raw
    while isinstance(node, dict) and node and rng.random() < 0.7:
        key = rng.choice(list(node))
        if not isinstance(node[key], dict):
            break
        path.append(key)
        node = node[key]
    if not isinstance(node, dict) or not node:
        return raw
    key = rng.choice(list(node))
    junk = [
        None,
        -1,
        0,
        3.5,
        "x",
        "",
        [],
        {},
        [1, "a"],
        {"name": "nope"},
        1e300,
        True,
        "fastgan",
        "../../etc",
    ]
    op = rng.randrange(4)
    if op == 0:
        del node[key]
    elif op == 1:
        node[key] = rng.choice(junk)
    elif op == 2:
        node[key + rng.choice(["_", "x", "s"])] = rng.choice(junk)
    else:
        node[key] = {"name": rng.choice(["fastgan", "hinge", "ccm", "zzz"]), "w": 1}
    return raw


def test_fuzzed_specs_validate_or_fail_with_spec_error():
    base = ExperimentSpec.preset("minimal_cpu").to_dict()
    rng = random.Random(0)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(200):
        raw = _mutate(base, rng)
        try:
            ExperimentSpec.validate_dict(raw)
            outcomes["ok"] += 1
        except SpecError as exc:
            assert exc.problems and all(isinstance(p, tuple) for p in exc.problems)
            outcomes["error"] += 1
        # anything else propagates and fails the test
    assert outcomes["error"] > 50 and outcomes["ok"] > 5, outcomes


def test_yaml_dump_is_plain_data():
    text = ExperimentSpec().to_yaml()
    assert isinstance(yaml.safe_load(text), dict)


def test_gradient_penalty_is_a_regulariser_not_a_loss():
    msg = problems({"loss": {"name": "gradient_penalty"}})
    assert msg.startswith("loss.name: 'gradient_penalty' is a regularizer, not an adversarial loss")
    assert "loss.r1_gamma" in msg and "loss.r2_gamma" in msg
    assert problems({"loss": "gradient_penalty"}).startswith("loss.name:")


def test_loss_is_a_part_with_arguments_old_shape_and_string_accepted():
    from projected_gan.registry import LOSSES
    from projected_gan.training.assemble import build_loss

    @LOSSES.register("margin_hinge_for_test", tags=("adversarial",))
    class MarginHinge:
        def __init__(self, margin: float = 1.0):
            self.margin = margin

    try:
        spec = ExperimentSpec.validate_dict(
            {"loss": {"name": "margin_hinge_for_test", "margin": 2.0, "r1_gamma": 1.0}}
        )
        assert spec.loss.kwargs == {"margin": 2.0}
        loss, penalty = build_loss(spec)
        assert loss.margin == 2.0 and penalty.r1_gamma == 1.0 and penalty.interval == 16
        assert penalty.r2_gamma == 0.0
        msg = problems({"loss": {"name": "margin_hinge_for_test", "margn": 2.0}})
        assert "loss.margn: 'margin_hinge_for_test' has no argument 'margn'" in msg
    finally:
        LOSSES.remove("margin_hinge_for_test")
    old = ExperimentSpec.validate_dict(
        {"loss": {"name": "hinge", "r1_gamma": 2, "r2_gamma": 3, "penalty_interval": 4}}
    )
    assert (old.loss.name, old.loss.r1_gamma, old.loss.r2_gamma) == ("hinge", 2.0, 3.0)
    assert old.loss.penalty_interval == 4
    assert ExperimentSpec.validate_dict({"loss": "lsgan"}).loss.name == "lsgan"
    again = ExperimentSpec.validate_dict(old.to_dict())
    assert again == old


def test_dry_run_refuses_a_penalty_as_the_loss():
    out = subprocess.run(
        [
            *(sys.executable, "-m", "projected_gan", "train", "--preset", "minimal_cpu"),
            *("--dry-run", "--set", "loss.name=gradient_penalty"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "loss.name: 'gradient_penalty' is a regularizer" in out.stderr
    assert "Traceback" not in out.stderr


def test_every_train_flag_reaches_the_run_through_the_spec(capsys):
    from tests.test_cli import run_main

    # --device and --data are plain overrides: --dry-run prints the spec that would run, and a
    # path YAML would read as a number stays the string given.
    args = ("train", "--preset", "minimal_cpu", "--dry-run", "--device", "cpu", "--data", "007")
    code, out, err = run_main(capsys, *args, "--set", "train.device=cuda")
    assert code == 0, err
    assert "  device: cpu\n" in out and "  path: '007'\n" in out  # the flags come last
    spec = ExperimentSpec.validate_dict(yaml.safe_load(out))
    assert (spec.train.device, spec.data.path) == ("cpu", "007")


def test_channel_counts_and_sizes_are_checked_by_their_field():
    assert ExperimentSpec.load(overrides=["data.channels=1"]).data.channels == 1
    with pytest.raises(SpecError, match=r"^data\.channels: must be between 1 and 16, got 17"):
        ExperimentSpec.load(overrides=["data.channels=17"])
    with pytest.raises(SpecError) as err:
        ExperimentSpec.load(overrides=["discriminator.extra_branch=true"])
    assert err.value.field == "discriminator.extra_branch" and ">= 4" in str(err.value)
    spec = ExperimentSpec.load(overrides=["data.resolution=[64, 96]"])
    assert spec.data.size == (64, 96) and spec.to_dict()["data"]["resolution"] == [64, 96]
    assert ExperimentSpec.load(overrides=["data.resolution=[64, 64]"]).data.resolution == 64
    with pytest.raises(SpecError, match=r"^data\.resolution: .*\[height, width\]"):
        ExperimentSpec.load(overrides=["data.resolution=[64]"])


def test_set_indexes_into_lists():
    two = ExperimentSpec.preset("fastgan_lite_two_networks_256")
    raw = two.model_dump(mode="json")
    out = apply_overrides(
        raw,
        [
            "discriminator.feature_network.0.input_size=128",
            "discriminator.feature_network.1.name=tf_efficientnet_lite2",
            "metrics.names.0=kid",
        ],
    )
    nets = out["discriminator"]["feature_network"]
    assert nets[0] == {"name": "tf_efficientnet_lite0", "input_size": 128}
    assert nets[1] == {"name": "tf_efficientnet_lite2"}
    assert out["metrics"]["names"][0] == "kid"
    assert raw["discriminator"]["feature_network"][0] == {"name": "tf_efficientnet_lite0"}
    # Through the spec: validated like any other value.
    spec = ExperimentSpec.load(
        preset="fastgan_lite_two_networks_256",
        overrides=["discriminator.feature_network.1.name=tf_efficientnet_lite2"],
    )
    assert [n.name for n in spec.discriminator.feature_network] == [
        "tf_efficientnet_lite0",
        "tf_efficientnet_lite2",
    ]
    # A whole entry can be replaced, with the bare-name shorthand.
    out = apply_overrides(raw, ["discriminator.feature_network.1=tf_efficientnet_lite2"])
    assert out["discriminator"]["feature_network"][1] == "tf_efficientnet_lite2"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "discriminator.feature_network.2.name=x",
            "discriminator.feature_network.2.name: index 2 is out of range: "
            "discriminator.feature_network has 2 entries",
        ),
        (
            "discriminator.feature_network.name=x",
            "discriminator.feature_network.name: discriminator.feature_network is a list; "
            "index it with a number: discriminator.feature_network.0.name",
        ),
        (
            "discriminator.projection_head.0.seed=1",
            "discriminator.projection_head is a mapping, not a list, so 0 cannot index it",
        ),
        ("train.kimg.0=1", "train.kimg is a value, not a section"),
        ("metrics.names.0=fd", "metrics.names is not a list in this spec; give it whole"),
    ],
)
def test_set_into_lists_refuses_bad_paths_naming_the_key(key, message):
    raw = ExperimentSpec.preset("fastgan_lite_two_networks_256").model_dump(mode="json")
    del raw["metrics"]["names"]  # a list the spec does not give
    with pytest.raises(SpecError) as info:
        apply_overrides(raw, [key])
    assert message in str(info.value)
    assert info.value.field == key.partition("=")[0]


def test_set_index_into_a_single_feature_network_says_to_use_the_list_form():
    """A spec with one ``feature_network`` mapping is not indexed: its fields are set by name."""
    raw = ExperimentSpec.preset("fastgan_lite_256").model_dump(mode="json")
    assert isinstance(raw["discriminator"]["feature_network"], dict)
    with pytest.raises(SpecError, match=r"give a list with --set discriminator.feature_network="):
        apply_overrides(raw, ["discriminator.feature_network.0.input_size=128"])
    out = apply_overrides(raw, ["discriminator.feature_network.input_size=128"])
    assert out["discriminator"]["feature_network"]["input_size"] == 128
