"""Parts that describe themselves: part configs, rebuilding from them, the pipeline-args table."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from projected_gan import ProjectedDiscriminator, create, create_from_config, part_config
from projected_gan.augmentations import Translation
from projected_gan.configs import PIPELINE_ARGS, spec_form, wire
from projected_gan.errors import PartBuildError
from projected_gan.registry import Registry


def test_create_records_the_registered_name_and_every_argument():
    G = create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    config = part_config(G)
    assert config["kind"] == "generators" and config["name"] == "fastgan_lite"
    # Defaults are written out, so a changed default cannot change a rebuilt model.
    assert config["kwargs"]["ngf"] == 8 and config["kwargs"]["z_dim"] == 256
    assert json.loads(json.dumps(config)) == config
    again = create_from_config(config)
    assert part_config(again) == config
    assert [p.shape for p in again.parameters()] == [p.shape for p in G.parameters()]


def test_aliases_record_the_canonical_name():
    assert part_config(create("losses", "logistic"))["name"] == "nonsaturating"


def test_constructing_a_registered_class_directly_records_it_but_not_a_subclass():
    assert part_config(Translation(ratio=0.25)) == {
        "kind": "augmentations",
        "name": "translation",
        "kwargs": {"ratio": 0.25},
    }

    class Shifted(Translation):  # not registered: it is not 'translation'
        pass

    assert part_config(Shifted()) is None


def test_unregistered_modules_and_unplain_arguments_have_no_config():
    assert part_config(nn.Linear(2, 2)) is None
    reg = Registry("widgets", "widget")

    @reg.register("holder")
    class Holder:
        def __init__(self, inner=None):
            self.inner = inner

    assert part_config(reg.create("holder", inner=[1, (2, 3)]))["kwargs"] == {"inner": [1, [2, 3]]}
    assert part_config(reg.create("holder", inner=torch.zeros(1))) is None


def test_projected_discriminator_records_its_parts_without_wired_arguments():
    D = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "input_size": 64, "pretrained": False},
        discriminator={"name": "multiscale", "norm": "group"},
        augment="translation",
        img_resolution=32,
    )
    config = part_config(D)
    assert config["kind"] == "projected_discriminator"
    kwargs = config["kwargs"]
    assert kwargs["feature_network"]["input_size"] == 64
    assert kwargs["discriminator"]["name"] == "multiscale"
    assert kwargs["discriminator"]["norm"] == "group"
    for wired in PIPELINE_ARGS["discriminators"]:
        assert wired not in kwargs["discriminator"]
    assert kwargs["augment"] == {"name": "diffaugment", "policy": "translation"}
    rebuilt = create_from_config(config)
    assert part_config(rebuilt) == config
    assert rebuilt.state_dict().keys() == D.state_dict().keys()


def test_a_hand_made_sub_part_leaves_the_discriminator_without_config():
    D = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "input_size": 64, "pretrained": False},
        augment=nn.Identity(),
        img_resolution=32,
    )
    assert part_config(D) is None


def test_wire_refuses_pipeline_arguments_and_spec_form_drops_them():
    with pytest.raises(PartBuildError, match="wired automatically") as info:
        wire("discriminators", {"channels": [1]}, {"channels": [2]}, "discriminator")
    assert info.value.field == "discriminator.channels"
    assert wire(
        "discriminators", {"norm": "batch"}, {"image_size": 8, "num_classes": None}, "d"
    ) == {
        "norm": "batch",
        "image_size": 8,
    }
    config = {
        "kind": "generators",
        "name": "g",
        "kwargs": {"img_resolution": 32, "c_dim": 0, "x": 1},
    }
    assert spec_form(config) == {"name": "g", "x": 1}


def test_bad_configs_are_refused():
    with pytest.raises(PartBuildError, match="unknown part kind 'gizmos'"):
        create_from_config({"kind": "gizmos", "name": "x", "kwargs": {}})
    with pytest.raises(PartBuildError, match="kind, name and kwargs"):
        create_from_config({"name": "x"})


def test_using_a_generator_does_not_import_the_trainer():
    code = (
        "import sys, projected_gan.inference\n"
        "from projected_gan import create\n"
        "create('generators', 'fastgan_lite', img_resolution=32, ngf=8)\n"
        "print(sorted(m for m in sys.modules if m.startswith('projected_gan.training')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
