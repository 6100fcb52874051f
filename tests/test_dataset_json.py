"""Labels from ``dataset.json`` (the official / StyleGAN2-ADA ``dataset_tool.py`` format)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from projected_gan.data import DataError, InfiniteBatches, load_image_dataset
from projected_gan.spec import ExperimentSpec, SpecError
from projected_gan.training.assemble import assemble
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.usefixtures("cache_in_tmp")

COLOURS = [(230, 20, 20), (20, 230, 20), (20, 20, 230)]  # class k: channel k dominates


def label_of(i: int, classes: int = 2) -> int:
    """A label unrelated to the chunk folder (i // 1000)."""
    return (i * 7 + i // 3) % classes


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, "PNG")
    return buf.getvalue()


def dataset_tool_zip(path: Path, n: int, classes: int = 2, labels: object = "auto") -> Path:
    """``n`` images in chunks of 1,000 (``00000/img00000000.png``, ...) and ``dataset.json``."""
    encoded = [png(COLOURS[k]) for k in range(classes)]
    entries = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            name = f"{i // 1000:05d}/img{i:08d}.png"
            zf.writestr(name, encoded[label_of(i, classes)])
            entries.append([name, label_of(i, classes)])
        zf.writestr("dataset.json", json.dumps({"labels": entries if labels == "auto" else labels}))
    return path


def test_conditional_run_uses_the_labels_of_dataset_json(tmp_path):
    data = dataset_tool_zip(tmp_path / "ffhq-like.zip", 2000)
    spec = ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[
            *tiny_overrides(tmp_path / "runs"),
            f"data.path={data}",
            "data.conditional=true",
            "data.max_images=null",
            "data.mirror=false",
        ],
    )
    a = assemble(spec)
    assert a.G.c_dim == 2  # two classes from the file, not three chunk folders ...
    want = torch.tensor([label_of(i) for i in range(2000)])
    assert torch.equal(a.label_pool, want)  # ... and every label is the file's
    folders = torch.arange(2000) // 1000
    assert (want != folders).sum() > 900  # (the chunk folders would give other labels)
    for _ in range(5):
        images, labels = next(a.batches)
        dominant = images.float().mean(dim=(2, 3)).argmax(dim=1)
        assert torch.equal(dominant, labels)  # each image carries its file label


def test_folder_with_dataset_json_and_class_names(tmp_path):
    root = tmp_path / "d"
    entries = []
    for i in range(9):
        name = f"{i // 4:05d}/img{i:08d}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(png(COLOURS[i % 3]))
        entries.append([name, i % 3])
    doc = {"labels": entries, "class_names": ["red", "green", "blue"]}
    (root / "dataset.json").write_text(json.dumps(doc))
    ds = load_image_dataset(root, 16, conditional=True)
    assert ds.class_names == ["red", "green", "blue"]
    assert ds.labels.tolist() == [i % 3 for i in range(9)]
    unlabelled = load_image_dataset(root, 16)  # without conditional the file is not needed
    assert unlabelled.labels is None and torch.equal(unlabelled.images, ds.images)


def test_labels_of_the_file_reach_the_batches_when_streaming(tmp_path):
    data = dataset_tool_zip(tmp_path / "d.zip", 40, classes=3)
    ds = load_image_dataset(data, 16, conditional=True, storage="stream", workers=1)
    images, labels = next(InfiniteBatches(ds, 16, seed=1))
    assert torch.equal(images.float().mean(dim=(2, 3)).argmax(dim=1), labels)


def _entries(n: int = 4) -> list[list]:
    return [[f"00000/img{i:08d}.png", i % 2] for i in range(n)]


@pytest.mark.parametrize(
    "labels, message",
    [
        (_entries()[:3], r"no label for 1 image\(s\): 00000/img00000003\.png"),
        (
            [*_entries(), ["00000/img00000099.png", 1]],
            r"labels 1 file\(s\) that are not images.*00000/img00000099\.png",
        ),
        ([*_entries(3), ["00000/img00000003.png", 1.5]], r"img00000003\.png is 1\.5, not an int"),
        ([*_entries(3), ["00000/img00000003.png", "1"]], r"img00000003\.png is '1', not an int"),
        ([*_entries(3), ["00000/img00000003.png", True]], r"img00000003\.png is True, not an int"),
        ([*_entries(3), ["00000/img00000003.png", -1]], r"img00000003\.png is -1; class indices"),
        ([*_entries(), ["00000/img00000001.png", 0]], r"img00000001\.png is labelled twice"),
        (None, r"'labels': null"),
        ({"a": 1}, r"'labels' must be a list"),
        ([["00000/img00000000.png"]], r"expected \[name, int\] pairs"),
    ],
)
def test_bad_dataset_json_is_an_error_naming_the_file(tmp_path, labels, message):
    data = dataset_tool_zip(tmp_path / "d.zip", 4, labels=labels)
    with pytest.raises(DataError, match=message) as caught:
        load_image_dataset(data, 16, conditional=True)
    assert "dataset.json" in str(caught.value) and caught.value.field == "conditional"


def test_class_names_must_cover_the_labels(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "a.png").write_bytes(png(COLOURS[0]))
    (root / "b.png").write_bytes(png(COLOURS[1]))
    doc = {"labels": [["a.png", 0], ["b.png", 2]], "class_names": ["x", "y"]}
    (root / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"1 label\(s\) are >= the 2 class names, e.g. b\.png"):
        load_image_dataset(root, 16, conditional=True)
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset\.json is not valid JSON"):
        load_image_dataset(root, 16, conditional=True)


def test_a_bad_dataset_json_is_a_spec_error_on_data_conditional(tmp_path):
    data = dataset_tool_zip(tmp_path / "d.zip", 4, labels=_entries(3))
    spec = ExperimentSpec.load(
        preset="minimal_cpu",
        overrides=[*tiny_overrides(tmp_path), f"data.path={data}", "data.conditional=true"],
    )
    with pytest.raises(SpecError, match=r"data\.conditional.*no label for 1 image"):
        assemble(spec)
