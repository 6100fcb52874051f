"""Decoding on the fly (``storage="stream"``): the same batches, order and resume as the cache,
unreadable files replaced or refused, metrics on a bounded set of reals, training and resume."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from projected_gan import build_from_spec
from projected_gan.data import (
    DataError,
    DataWarning,
    InfiniteBatches,
    StreamingDataset,
    load_image_dataset,
)
from projected_gan.metrics import evaluate
from projected_gan.spec import ExperimentSpec
from projected_gan.training import Trainer
from tests.conftest import tiny_overrides
from tests.test_distributed import TinyFeatures

pytestmark = pytest.mark.usefixtures("cache_in_tmp")


def class_zip(path: Path, n: int, broken: tuple[int, ...] = ()) -> Path:
    """``n`` noise images (16 px) in three class folders; the indices in ``broken`` are junk."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
            data = b"junk" if i in broken else buf.getvalue()
            zf.writestr(f"class{i % 3}/{i:04d}.png", data)
    return path


def both(path: Path, **kwargs):
    cached = load_image_dataset(path, 16, conditional=True, **kwargs)
    streamed = load_image_dataset(path, 16, conditional=True, storage="stream", workers=2, **kwargs)
    assert not isinstance(cached, StreamingDataset) and isinstance(streamed, StreamingDataset)
    return cached, streamed


def test_streamed_batches_equal_the_cached_ones_on_every_rank(tmp_path):
    cached, streamed = both(class_zip(tmp_path / "d.zip", 30))
    assert cached.class_names == streamed.class_names and torch.equal(
        cached.labels, streamed.labels
    )
    for rank in range(2):
        kw = dict(seed=5, mirror=True, rank=rank, world_size=2, drop_last=False)
        a, b = InfiniteBatches(cached, 4, **kw), InfiniteBatches(streamed, 4, **kw)
        for _ in range(12):  # more than an epoch (60 samples with mirror over 8 per step)
            (x, y), (u, v) = next(a), next(b)
            assert torch.equal(x, u) and torch.equal(y, v)
        assert a.state_dict() == b.state_dict()
        b.close()


def test_stream_resumes_exactly_although_the_workers_ran_ahead(tmp_path):
    _, streamed = both(class_zip(tmp_path / "d.zip", 30))
    straight = InfiniteBatches(streamed, 4, seed=2, mirror=True)
    want = [next(straight)[0] for _ in range(10)]
    first = InfiniteBatches(streamed, 4, seed=2, mirror=True)
    for _ in range(4):
        next(first)
    state = first.state_dict()
    resumed = InfiniteBatches(streamed, 4, seed=2, mirror=True)
    resumed.load_state_dict(state)
    assert all(torch.equal(next(resumed)[0], w) for w in want[4:7])
    first.load_state_dict(state)  # the same iterator, rewound: its prefetched batches are dropped
    assert all(torch.equal(next(first)[0], w) for w in want[4:10])
    for it in (straight, first, resumed):
        it.close()


def test_unreadable_files_are_replaced_and_reported_or_refused_with_strict(tmp_path):
    data = class_zip(tmp_path / "d.zip", 12, broken=(4,))
    ds = load_image_dataset(data, 16, storage="stream", workers=1)
    assert len(ds) == 12  # known before decoding: nothing can be dropped
    k = ds.reader.names.index("class1/0004.png")
    with pytest.warns(DataWarning, match=r"unreadable file class1/0004\.png.*stands in"):
        images = ds.read_images(torch.tensor([k, k + 1]))
    assert torch.equal(images[0], images[1])  # the next readable image (in sorted order)
    assert ds.skipped == ["class1/0004.png"]
    fresh = load_image_dataset(data, 16, storage="stream", workers=1)
    batches = InfiniteBatches(fresh, 12, seed=0)  # an epoch: every file once
    with pytest.warns(DataWarning, match=r"class1/0004\.png"):
        next(batches)
    batches.close()
    strict = load_image_dataset(data, 16, storage="stream", workers=1, strict=True)
    batches = InfiniteBatches(strict, 12, seed=0)
    with pytest.raises(DataError, match=r"^cannot read class1/0004\.png in .*d\.zip"):
        next(batches)  # raised in the training process, as one clear message
    batches.close()


def test_metrics_read_a_bounded_subset_of_streamed_reals(tmp_path):
    cached, streamed = both(class_zip(tmp_path / "d.zip", 20))

    def generator_fn(n, labels):
        g = torch.Generator().manual_seed(n)
        return torch.rand(n, 3, 16, 16, generator=g) * 2 - 1

    kw = dict(metrics=["fd"], num_images=8, batch_size=4, device="cpu", use_cache=False)
    net = {"feature_network": TinyFeatures()}
    assert evaluate(generator_fn, streamed, **kw, **net) == pytest.approx(
        evaluate(generator_fn, cached, **kw, **net), rel=1e-6
    )
    streamed.metric_reals = 10  # what a large streamed dataset does by default (50,000)
    assert evaluate(generator_fn, streamed, **kw, **net) == pytest.approx(
        evaluate(generator_fn, cached, **kw, num_real=10, **net), rel=1e-6
    )
    assert evaluate(generator_fn, streamed, **kw, **net) != pytest.approx(
        evaluate(generator_fn, cached, **kw, **net), rel=1e-6
    )


def test_training_on_streamed_data_resumes_exactly(tmp_path):
    data = class_zip(tmp_path / "d.zip", 24)
    extra = [f"data.path={data}", "data.storage=stream", "data.workers=1"]
    spec = ExperimentSpec.load(preset="minimal_cpu", overrides=[*tiny_overrides(tmp_path), *extra])
    trainer = build_from_spec(spec)
    assert isinstance(trainer.batches._stream_data, StreamingDataset)
    trainer.step()  # trains on streamed batches
    next(trainer.batches)  # (and the data moves on without steps too)
    trainer.save()
    want = [next(trainer.batches)[0] for _ in range(3)]  # the workers had prefetched these
    trainer.batches.close()
    resumed = Trainer.resume(trainer.run_dir)
    assert resumed.nimg == 4
    got = [next(resumed.batches)[0] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(want, got))
