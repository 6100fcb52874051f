"""A run made with ``Trainer(G, D, ...)`` (no spec describing its parts) is a run like any other:
its checkpoints rebuild G for ``generate`` and the whole run for ``train --resume``."""

import pytest
import torch
from PIL import Image

from projected_gan import (
    ExperimentSpec,
    InfiniteBatches,
    ProjectedDiscriminator,
    create,
    load_image_dataset,
)
from projected_gan.checkpoint import CheckpointError, find_checkpoints, load_checkpoint
from projected_gan.data import ImageDataset, default_dataset_path
from projected_gan.inference import load_generator
from projected_gan.training import Trainer
from tests.test_cli import run_main

SPEC = {"train": {"batch": 4, "device": "cpu", "deterministic": True}}


def hand_built(run_dir, dataset=None):
    torch.manual_seed(0)
    data = dataset or load_image_dataset(default_dataset_path(), 32, max_images=32)
    G = create("generators", "fastgan_lite", img_resolution=32, ngf=8)
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


def test_hand_built_run_resumes_exactly_and_generates(tmp_path, capsys):
    straight = hand_built(tmp_path / "straight")
    expected = [losses(straight.step()) for _ in range(2)]

    first = hand_built(tmp_path / "run")
    first.step()
    first.save()
    ckpt = load_checkpoint(find_checkpoints(tmp_path / "run")[0])
    meta = ckpt.meta
    assert meta["built_from_spec"] is False
    assert meta["parts"]["G"]["name"] == "fastgan_lite"
    assert meta["parts"]["D"]["kind"] == "projected_discriminator"
    assert meta["data"]["mirror"] is True and meta["data"]["seed"] == 3
    del first

    # The checkpoint alone rebuilds G: same weights as the trainer's G_ema.
    G = load_generator(tmp_path / "run")
    state = G.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ckpt.models["G_ema"].items())
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

    # Resume rebuilds G, D, loss and data from the checkpoint and continues the same stream.
    resumed = Trainer.resume(tmp_path / "run")
    assert resumed.nimg == 4
    assert losses(resumed.step()) == pytest.approx(expected[1], abs=1e-6, rel=1e-6)
    del resumed

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


def test_hand_built_run_without_recorded_data_says_so(tmp_path, capsys):
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    trainer = hand_built(tmp_path / "run", dataset=ImageDataset(images))
    trainer.save()
    assert load_generator(tmp_path / "run").img_resolution == 32  # generate still works
    with pytest.raises(CheckpointError, match="recorded no data"):
        Trainer.resume(tmp_path / "run")
    code, _, err = run_main(capsys, "train", "--resume", str(tmp_path / "run"), "--no-progress")
    assert code == 2 and "recorded no data" in err and "Traceback" not in err
