"""Several feature networks in one ProjectedDiscriminator, in Python and in the spec."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import projected_gan
from projected_gan import ExperimentSpec, ProjectedDiscriminator, build_from_spec
from projected_gan.checkpoint import find_checkpoints, load_checkpoint
from projected_gan.projectors import CCM, FeatureNetwork, Projector
from projected_gan.spec import SpecError
from tests.conftest import adversarial_round, tiny_overrides

LITE0_NATIVE = {"name": "tf_efficientnet_lite0", "resize": "never", "input_size": None}
LITE1_NATIVE = {"name": "tf_efficientnet_lite1", "resize": "never", "input_size": None}


def images(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


class Pyramid(FeatureNetwork):
    """A user's own network (not registered): strided convs giving 4 maps at strides 2-16."""

    def __init__(self) -> None:
        super().__init__(resize="never", input_size=None)
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.downs = nn.ModuleList(nn.Conv2d(8, 8, 2, stride=2) for _ in range(3))
        self.channels, self.reductions = (8, 8, 8, 8), (2, 4, 8, 16)
        self.freeze()

    def forward_features(self, x):
        maps = [self.stem(x)]
        for down in self.downs:
            maps.append(down(maps[-1]))
        return maps


@pytest.mark.slow
def test_two_pretrained_efficientnets_at_256_give_200_logits_and_train():
    """The issue's done-when: lite0 + lite1 (shipped weights), 256 px, a gradient step to G."""
    D = ProjectedDiscriminator(
        feature_network=["tf_efficientnet_lite0", "tf_efficientnet_lite1"], img_resolution=256
    )
    assert len(D.projectors) == len(D.discriminators) == 2
    assert [d.num_logits for d in D.discriminators] == [100, 100]
    assert D(images(size=256)).shape == (2, 200)
    torch.manual_seed(0)
    G = projected_gan.create("generators", "fastgan_lite", img_resolution=256, ngf=8)
    adversarial_round(G, D, images(batch=2, size=256))


def test_logits_are_each_networks_logits_concatenated_and_params_are_the_union():
    torch.manual_seed(0)
    D = ProjectedDiscriminator(
        feature_network=[LITE0_NATIVE, Pyramid(), LITE1_NATIVE],
        projection_head=["ccm_csm", {"name": "ccm", "cout": 8, "expand": False}, "ccm_csm"],
        augment=None,
        img_resolution=64,
    ).eval()
    assert isinstance(D.projector, nn.ModuleList) and isinstance(D.discriminator, nn.ModuleList)
    assert isinstance(D.projectors[1].feature_network, Pyramid)
    assert isinstance(D.projectors[1].head, CCM)
    x = images()
    with torch.no_grad():
        got = D(x)
        parts = [d(p(x), None) for p, d in zip(D.projectors, D.discriminators)]
    assert got.shape == (2, sum(d.num_logits for d in D.discriminators))
    torch.testing.assert_close(got, torch.cat(parts, dim=-1), rtol=0, atol=0)

    trainable = {id(p) for p in D.trainable_parameters()}
    union = {id(p) for d in D.discriminators for p in d.parameters()}
    assert trainable == union and len(union) == len(D.trainable_parameters())
    frozen = {id(p) for proj in D.projectors for p in proj.parameters()}
    assert frozen and not frozen & trainable
    D.train()
    assert not any(m.training for proj in D.projectors for m in proj.modules())
    assert all(d.training for d in D.discriminators)


def test_every_network_sees_the_same_augmented_image():
    D = ProjectedDiscriminator(
        feature_network=[LITE0_NATIVE, Pyramid()],
        augment="color,translation,cutout",
        img_resolution=64,
    )
    seen = []
    hooks = [
        proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        for proj in D.projectors
    ]
    x = images()
    with torch.no_grad():
        D(x)
    for h in hooks:
        h.remove()
    assert len(seen) == 2
    assert not torch.equal(seen[0], x)  # augmented ...
    assert seen[0] is seen[1]  # ... once, for both networks


def test_g_step_gradient_flows_through_every_network():
    D = ProjectedDiscriminator(feature_network=[LITE0_NATIVE, Pyramid()], img_resolution=64)
    x = images().requires_grad_()
    D.requires_grad_(False)
    per_network = []
    for proj, disc in zip(D.projectors, D.discriminators):
        x.grad = None
        disc(proj(x), None).mean().backward()
        per_network.append(x.grad.abs().sum())
    assert all(g > 0 for g in per_network)
    x.grad = None
    D(x).mean().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is None for proj in D.projectors for p in proj.parameters())


def test_one_network_in_a_list_keeps_the_single_network_layout():
    torch.manual_seed(0)
    single = ProjectedDiscriminator(feature_network=LITE0_NATIVE, img_resolution=64)
    listed = ProjectedDiscriminator(feature_network=[LITE0_NATIVE], img_resolution=64)
    assert isinstance(listed.projector, Projector)
    assert single.state_dict().keys() == listed.state_dict().keys()
    assert listed.projectors == [listed.projector]


def test_per_network_arguments_are_checked():
    with pytest.raises(ValueError, match=r"projection_head: a list needs one entry .*\(2\), got 3"):
        ProjectedDiscriminator(
            feature_network=[LITE0_NATIVE, Pyramid()], projection_head=["none"] * 3
        )
    heads = projected_gan.create(
        "discriminators", "multiscale", channels=(8,), reductions=(4,), image_size=64
    )
    with pytest.raises(ValueError, match="one MultiScaleDiscriminator instance cannot serve 2"):
        ProjectedDiscriminator(feature_network=[LITE0_NATIVE, Pyramid()], discriminator=heads)
    with pytest.raises(ValueError, match="list is empty"):
        ProjectedDiscriminator(feature_network=[])
    with pytest.raises(TypeError, match=r"feature_network\[1\] must build"):
        ProjectedDiscriminator(feature_network=[LITE0_NATIVE, nn.Conv2d(3, 3, 1)])
    with pytest.raises(projected_gan.UnknownPartError, match="tf_efficientnet_lite9"):
        ProjectedDiscriminator(feature_network=[LITE0_NATIVE, "tf_efficientnet_lite9"])


# --------------------------------------------------------------------------------------- spec
def test_spec_accepts_a_list_of_names_and_dicts_and_names_bad_entries():
    spec = ExperimentSpec.validate_dict(
        {"discriminator": {"feature_network": ["tf_efficientnet_lite0", LITE1_NATIVE]}}
    )
    nets = spec.discriminator.feature_network
    assert [n.name for n in nets] == ["tf_efficientnet_lite0", "tf_efficientnet_lite1"]
    assert nets[1].kwargs == {"resize": "never", "input_size": None}
    assert ExperimentSpec.validate_dict(spec.to_dict()) == spec  # YAML/JSON round trip

    single = ExperimentSpec.load(overrides=["discriminator.feature_network=tf_efficientnet_lite1"])
    assert single.discriminator.feature_network.name == "tf_efficientnet_lite1"

    with pytest.raises(SpecError) as info:
        typo = ["tf_efficientnet_lite0", "tf_efficientnet_lit1"]
        ExperimentSpec.validate_dict({"discriminator": {"feature_network": typo}})
    assert "discriminator.feature_network.1.name" in str(info.value)
    assert "did you mean 'tf_efficientnet_lite1'" in str(info.value)
    with pytest.raises(SpecError, match=r"feature_network.0.colour: .* no argument 'colour'"):
        ExperimentSpec.validate_dict(
            {"discriminator": {"feature_network": [{"name": "timm/resnet18", "colour": 1}]}}
        )
    with pytest.raises(SpecError, match=r"discriminator\.feature_network: .*list is empty"):
        ExperimentSpec.validate_dict({"discriminator": {"feature_network": []}})


def test_a_spec_with_two_networks_trains_at_ci_size(tmp_path):
    """lite0 (shipped weights) + a random-weight DeiT, through build_from_spec and fit()."""
    nets = (
        "[{name: tf_efficientnet_lite0, input_size: 64},"
        " {name: vit/deit_tiny_patch16_224, pretrained: false, input_size: 64}]"
    )
    overrides = [o for o in tiny_overrides(tmp_path) if "feature_network" not in o]
    spec = ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[*overrides, f"discriminator.feature_network={nets}", "train.kimg=0.008"],
    )
    trainer = build_from_spec(spec)
    D = trainer.D
    assert [type(p.feature_network).__name__ for p in D.projectors] == [
        "TimmFeatureNetwork",
        "TransformerFeatureNetwork",
    ]
    heads_before = [p.detach().clone() for p in D.trainable_parameters()]
    run = trainer.fit(progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(heads_before, D.trainable_parameters()))
    ckpt = load_checkpoint(find_checkpoints(run)[0])
    assert {"projector.0", "projector.1", "discriminator.0", "discriminator.1"} <= {
        ".".join(k.split(".")[:2]) for k in ckpt.models["D"]
    }
    # The spec it saves is the one the trainer describes its parts by: the same networks.
    assert ExperimentSpec.from_file(run / "spec.yaml") == trainer.spec
    described = [n.name for n in trainer.spec.discriminator.feature_network]
    assert described == [n.name for n in spec.discriminator.feature_network]
