"""A run made with ``Trainer(G, D, ...)`` is a run like any other: the trainer describes its
parts and data by one spec, which its checkpoints record, so eval, ``--resume``, ``--init`` and
export read them through the same code as a spec-built run's."""

import pytest
import torch
from PIL import Image

from projected_gan import (
    ExperimentSpec,
    InfiniteBatches,
    ProjectedDiscriminator,
    build_from_spec,
    create,
    load_image_dataset,
)
from projected_gan.checkpoint import UndescribedRunError, find_checkpoints, load_checkpoint
from projected_gan.commands.evaluation import evaluate_checkpoint
from projected_gan.data import ImageDataset, default_dataset_path
from projected_gan.errors import InputError
from projected_gan.export import export_checkpoint, read_exported_weights
from projected_gan.inference import load_generator
from projected_gan.training import Trainer
from tests.conftest import tiny_overrides
from tests.test_cli import run_main

SPEC = {"train": {"batch": 4, "device": "cpu", "deterministic": True}}


def hand_built(run_dir, dataset=None, G=None):
    torch.manual_seed(0)
    data = dataset or load_image_dataset(default_dataset_path(), 32, max_images=32)
    G = G or create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    D = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "input_size": 64},
        img_resolution=32,
    )
    spec = ExperimentSpec.validate_dict(SPEC)
    batches = InfiniteBatches(data, 4, seed=3, mirror=True)
    return Trainer(
        G, D, loss=create("losses", "hinge"), batches=batches, spec=spec, run_dir=run_dir
    )


def losses(logs):
    return [float(logs[k]) for k in ("loss_g", "loss_d_real", "loss_d_fake")]


def same_state(a, b):
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_the_trainer_describes_its_parts_and_data_by_one_spec(tmp_path):
    trainer = hand_built(tmp_path / "run")
    spec = trainer.spec
    assert trainer.undescribed == {}
    assert spec.generator.name == "fastgan_lite" and spec.generator.ngf == 8
    assert spec.discriminator.feature_network.input_size == 64
    assert spec.loss.name == "hinge" and spec.loss.r1_gamma == 0
    d = spec.data
    assert d.path == str(default_dataset_path().resolve()) and d.resolution == 32
    assert (d.max_images, d.mirror, d.channels) == (32, True, 3)
    assert spec.train.seed == 3  # the batches' order seed
    # The description builds the same run: same parts, same data, same batches.
    rebuilt = build_from_spec(spec.model_copy(deep=True), run_dir=tmp_path / "rebuilt")
    assert rebuilt.spec == spec
    assert same_state(rebuilt.G, trainer.G) is False  # fresh weights, same architecture
    assert rebuilt.G.state_dict().keys() == trainer.G.state_dict().keys()
    assert torch.equal(next(rebuilt.batches)[0], next(trainer.batches)[0])


def test_a_spec_seed_that_contradicts_the_batches_is_refused(tmp_path):
    data = load_image_dataset(default_dataset_path(), 32, max_images=32)
    G = create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    D = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "input_size": 64}, img_resolution=32
    )
    spec = ExperimentSpec.validate_dict({"train": {"batch": 4, "seed": 5, "device": "cpu"}})
    with pytest.raises(InputError, match=r"^train\.seed: 5, but the batches"):
        Trainer(G, D, loss=create("losses", "hinge"), batches=InfiniteBatches(data, 4), spec=spec)


def test_hand_built_checkpoints_read_like_spec_built_ones(tmp_path, capsys):
    straight = hand_built(tmp_path / "straight")
    expected = [losses(straight.step()) for _ in range(2)]
    del straight

    first = hand_built(tmp_path / "run")
    first.step()
    first.save()
    ckpt = load_checkpoint(find_checkpoints(tmp_path / "run")[0])
    assert ckpt.meta["spec"] == first.spec.to_dict() and ckpt.meta["undescribed"] == {}
    assert not {"built_from_spec", "parts", "data"} & set(ckpt.meta)
    assert ExperimentSpec.from_file(tmp_path / "run" / "spec.yaml") == first.spec

    # --resume: the same assemble(spec) as any run; the state is the saved one.
    resumed = Trainer.resume(tmp_path / "run")
    assert resumed.spec == first.spec and resumed.nimg == 4
    for name in ("G", "G_ema", "D"):
        assert same_state(getattr(resumed, name), getattr(first, name)), name
    assert resumed.batches.state_dict() == first.batches.state_dict()
    assert losses(resumed.step()) == pytest.approx(expected[1], abs=1e-6, rel=1e-6)
    del resumed, first

    # eval: the run's own data from its spec (a cheap metric: few images).
    results = evaluate_checkpoint(str(tmp_path / "run"), metrics="fd", num=8, device="cpu")
    assert set(results) == {"fd"} and results["fd"] >= 0

    # export and generate: G from the spec's generator section.
    exported = read_exported_weights(export_checkpoint(tmp_path / "run", tmp_path / "x").folder)
    assert exported.config["generator"]["kwargs"]["ngf"] == 8
    assert all(torch.equal(v, ckpt.models["G_ema"][k]) for k, v in exported.state.items())
    code, _, err = run_main(
        capsys,
        "generate",
        str(tmp_path / "run"),
        "--seeds",
        "0-1",
        "--grid",
        str(tmp_path / "g.png"),
    )
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size == (2 * 32, 32)

    # --init of a spec-built run from the hand-built one: everything copies.
    spec = ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[
            *tiny_overrides(tmp_path / "init"),
            ("train.init.source", str(tmp_path / "run")),
        ],
    )
    started = build_from_spec(spec)
    modules = started.init_record["modules"]
    assert all(modules[m]["copied"] == modules[m]["total"] for m in ("G", "G_ema"))
    assert modules["D"]["copied"] == modules["D"]["total"] > 0
    state = ckpt.models["G"]
    assert all(torch.equal(v, state[k]) for k, v in started.G.state_dict().items())

    # The command line resumes it too.
    code, _, err = run_main(
        capsys,
        "train",
        "--resume",
        str(tmp_path / "run"),
        "--no-progress",
        "--set",
        "train.kimg=0.008",
    )
    assert code == 0, err
    assert load_checkpoint(find_checkpoints(tmp_path / "run")[0]).meta["nimg"] == 8


def test_what_the_spec_cannot_describe_is_refused_by_name(tmp_path, capsys):
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    trainer = hand_built(tmp_path / "run", dataset=ImageDataset(images))
    assert set(trainer.undescribed) == {"data"}
    trainer.save()
    assert load_generator(tmp_path / "run").img_resolution == 32  # generate still works
    with pytest.raises(UndescribedRunError, match="cannot describe its data") as err:
        Trainer.resume(tmp_path / "run")
    assert isinstance(err.value, InputError) and err.value.field == "data"
    with pytest.raises(UndescribedRunError, match="--data"):
        evaluate_checkpoint(str(tmp_path / "run"), metrics="fd", num=8, device="cpu")
    code, _, err = run_main(capsys, "train", "--resume", str(tmp_path / "run"), "--no-progress")
    assert code == 2 and "cannot describe its data" in err and "Traceback" not in err

    class Custom(torch.nn.Module):  # a generator the registries never built
        def __init__(self):
            super().__init__()
            self.inner = create("generators", "fastgan_lite", img_resolution=32, ngf=8)
            self.z_dim, self.c_dim, self.img_resolution = self.inner.z_dim, 0, 32

        def forward(self, z, c=None):
            return self.inner(z, c)

    trainer = hand_built(tmp_path / "custom", G=Custom())
    assert set(trainer.undescribed) == {"generator"}
    trainer.save()
    with pytest.raises(UndescribedRunError, match="cannot describe its generator"):
        Trainer.resume(tmp_path / "custom")
    with pytest.raises(UndescribedRunError, match="generator"):
        load_generator(tmp_path / "custom")
