"""The decoded cache at scale: mapped (not loaded) and shared by processes, built once under a
lock, never trusted when torn or stale, and falling back to streaming when the disk is small."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from projected_gan.data import (
    DataError,
    DataWarning,
    InfiniteBatches,
    StreamingDataset,
    load_image_dataset,
)
from projected_gan.data import load as load_module
from projected_gan.data import store as store_module
from projected_gan.data.files import open_source
from projected_gan.data.load import dataset_cache_files

pytestmark = pytest.mark.usefixtures("cache_in_tmp")

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "data_scale.py"
LINUX_MEMORY = Path("/proc/self/smaps_rollup").exists()


def noise_zip(path: Path, n: int, size: int = 16, fmt: str = "PNG") -> Path:
    """``n`` distinct noise images (``size`` px) in a stored zip, in two chunk folders."""
    rng = np.random.default_rng(n)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            buf = io.BytesIO()
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buf, fmt)
            zf.writestr(f"{i * 2 // n:05d}/img{i:08d}.{fmt.lower()}", buf.getvalue())
    return path


def cache_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


# ---------------------------------------------------------------------------------------------
# Mapped, shared memory (the acceptance test: measured in subprocesses)


@pytest.mark.skipif(not LINUX_MEMORY, reason="reads /proc/self/smaps_rollup (Linux)")
def test_opening_maps_the_cache_and_two_processes_share_its_pages(tmp_path):
    n, res = 3000, 128
    data = noise_zip(tmp_path / "big.zip", n, size=res, fmt="BMP")
    built = load_image_dataset(data, res, cache_dir=tmp_path / "c", workers=2)
    decoded = n * 3 * res * res  # 147 MB (10 %: 14.7 MB; opening costs ~2.5 MB of heap)
    assert built.mapped and built.cache_file.stat().st_size == decoded
    del built
    cmd = [
        sys.executable,
        str(BENCHMARK),
        "--child",
        "open",
        "--data",
        str(data),
        f"--cache-dir={tmp_path / 'c'}",
        f"--resolution={res}",
        "--batch=16",  # (batch-sized buffers: what the C allocator keeps of them stays small)
        f"--batches={n // 16}",  # an epoch of batches on top of reading every image once
        "--read-all",
    ]
    procs = [
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        records = [json.loads(p.stdout.readline()) for p in procs]  # both have read everything
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        together = [json.loads(p.stdout.readline()) for p in procs]
    finally:
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdin.close()
            p.stdout.close()
    for record, mem in zip(records, together):
        assert record["mapped"] and record["images"] == n
        before, after = record["before"], record["after_reading"]
        # Every image was read, and the pages sit in the file's mapping, not on the heap.
        assert after["file_rss"] >= 0.95 * decoded
        assert after["anonymous"] - before["anonymous"] < 0.10 * decoded, (before, after)
        # With both processes alive, each one's pages of the file are shared with the other.
        assert mem["file_shared"] >= 0.95 * decoded, mem
        assert mem["file_private"] <= 0.05 * decoded, mem
    assert records[0]["checksum"] == records[1]["checksum"]


def test_batches_never_write_into_the_cache_file(tmp_path):
    data = noise_zip(tmp_path / "d.zip", 40)
    ds = load_image_dataset(data, 16, conditional=True)
    digest = hashlib.sha256(ds.cache_file.read_bytes()).hexdigest()
    assert ds.mapped and ds.images.data_ptr() != 0
    batches = InfiniteBatches(ds, 8, mirror=True, gpu_cache_bytes=0)  # host gather path
    for _ in range(12):
        images, _ = next(batches)
        images.add_(1)  # a consumer that modifies its batch must not reach the data
    resident = InfiniteBatches(ds, 8, mirror=True)  # resident path: indexes the map directly
    for _ in range(12):
        next(resident)[0].add_(1)
    assert hashlib.sha256(ds.cache_file.read_bytes()).hexdigest() == digest
    fresh = load_image_dataset(data, 16, cache=False)
    assert torch.equal(ds.images, fresh.images)


def test_host_gather_runs_ahead_and_still_resumes_exactly(tmp_path):
    ds = load_image_dataset(noise_zip(tmp_path / "d.zip", 40), 16, conditional=True)
    resident = InfiniteBatches(ds, 8, seed=4, mirror=True)
    want = [next(resident) for _ in range(9)]
    gathered = InfiniteBatches(ds, 8, seed=4, mirror=True, gpu_cache_bytes=0, gather_ahead=True)
    assert not gathered.resident and gathered._thread
    got = [next(gathered) for _ in range(4)]  # the thread has gathered the 5th already
    state = gathered.state_dict()
    got += [next(gathered) for _ in range(2)]
    gathered.load_state_dict(state)  # rewinds past the batch gathered ahead
    got += [next(gathered) for _ in range(3)]
    expected = [*want[:6], *want[4:7]]
    for (x, y), (u, v) in zip(expected, got):
        assert torch.equal(x, u) and torch.equal(y, v)


# ---------------------------------------------------------------------------------------------
# Torn, stale, legacy: never trusted, rebuilt with one warning


def _files(data: Path, res: int = 16):
    return dataset_cache_files(open_source(data), data, res)


def _cut_raw(files) -> None:
    files.raw.write_bytes(files.raw.read_bytes()[:1000])


def _older_format(files) -> None:
    meta = json.loads(files.meta.read_text())
    files.meta.write_text(json.dumps({**meta, "format": 1}))


def _torn_sidecar(files) -> None:
    files.meta.write_text(files.meta.read_text()[:50])


def _no_sidecar(files) -> None:
    files.meta.unlink()


def _other_settings(files) -> None:
    meta = json.loads(files.meta.read_text())
    files.meta.write_text(json.dumps({**meta, "key": {**meta["key"], "resolution": 8}}))


def _legacy_npz(files) -> None:
    files.raw.unlink()
    files.meta.unlink()
    files.legacy[0].parent.mkdir(parents=True, exist_ok=True)
    for old in files.legacy:  # version 1 kept one per use_labels setting
        np.savez(old, images=np.zeros((1, 3, 16, 16), np.uint8), meta=np.array("{}"))


@pytest.mark.parametrize(
    "damage, why",
    [
        (_cut_raw, "cut off mid-write"),
        (_older_format, "in format 1"),
        (_torn_sidecar, "torn or unreadable"),
        (_no_sidecar, "sidecar .json is missing"),
        (_other_settings, "settings do not match"),
        (_legacy_npz, "written by an older version"),
    ],
)
def test_torn_or_stale_cache_is_rebuilt_with_one_warning(tmp_path, damage, why):
    data = noise_zip(tmp_path / "d.zip", 30)
    expected = load_image_dataset(data, 16, cache=False).images.clone()
    load_image_dataset(data, 16)  # the cache
    files = _files(data)
    damage(files)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = load_image_dataset(data, 16)
    found = cache_warnings(record)
    assert len(found) == 1 and why in found[0] and "not trusted" in found[0], found
    assert ds.mapped and torch.equal(ds.images, expected)
    assert not any(p.exists() for p in files.legacy)  # the old format's file is gone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_image_dataset(data, 16)  # the rebuilt entry is trusted, silently
    assert torch.equal(again.images, expected)


def test_a_failed_build_leaves_nothing_that_looks_finished(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    for i in range(6):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(data / f"{i}.png")
    (data / "3_broken.png").write_bytes(b"not a png")
    files = _files(data)
    with pytest.raises(DataError, match=r"3_broken\.png"):
        load_image_dataset(data, 16, strict=True)  # fails mid-build
    assert not files.raw.exists() and not files.meta.exists()
    assert not [p for p in files.raw.parent.iterdir() if p.name.endswith(".tmp")]
    # What a killed build leaves (its temp file) is removed by the next build of the entry.
    leftover = files.raw.parent / f".{files.raw.name}.abcdefgh.tmp"
    leftover.write_bytes(b"half an image")
    with pytest.warns(DataWarning, match="skipped 1 unreadable"):
        ds = load_image_dataset(data, 16)
    assert len(ds) == 6 and not leftover.exists()


# ---------------------------------------------------------------------------------------------
# One builder


def test_concurrent_loads_decode_once(tmp_path, monkeypatch):
    data = noise_zip(tmp_path / "d.zip", 40)
    calls = []
    real = store_module.decode_into

    def slow_decode(*args, **kwargs):
        calls.append(threading.current_thread().name)
        threading.Event().wait(0.5)  # the other loader arrives while this one builds
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, "decode_into", slow_decode)
    results: dict[int, torch.Tensor] = {}

    def load(k: int) -> None:
        results[k] = load_image_dataset(data, 16, workers=1).images

    threads = [threading.Thread(target=load, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1  # one decoded; the others waited at the lock, then mapped its file
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def test_the_first_process_of_each_node_loads_first(monkeypatch):
    from projected_gan import distributed

    for local_rank, expected in ((0, ["load", "barrier"]), (1, ["barrier", "load"])):
        events: list[str] = []
        monkeypatch.setattr(distributed, "barrier", lambda events=events: events.append("barrier"))
        info = distributed.DistInfo(rank=8 + local_rank, world_size=16, local_rank=local_rank)
        distributed.node_first(info, lambda events=events: events.append("load"))
        assert events == expected


# ---------------------------------------------------------------------------------------------
# When the cache cannot be written or would not fit


def test_auto_streams_when_the_disk_is_too_small(tmp_path, monkeypatch):
    data = noise_zip(tmp_path / "d.zip", 20)
    monkeypatch.setattr(load_module, "disk_room", lambda folder: 10_000)
    with pytest.warns(DataWarning, match=r"more than .* has free.*on the fly"):
        ds = load_image_dataset(data, 16)
    assert isinstance(ds, StreamingDataset) and len(ds) == 20
    assert not list((tmp_path / "cache").rglob("*.raw"))
    cached = load_image_dataset(data, 16, storage="cache")  # insisting builds it anyway
    assert cached.mapped


def test_unwritable_cache_folder_keeps_small_data_in_memory(tmp_path):
    data = noise_zip(tmp_path / "d.zip", 20)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(DataWarning, match="could not write the dataset cache.*in memory"):
        ds = load_image_dataset(data, 16, cache_dir=blocker)
    assert not ds.mapped and ds.cache_file is None and len(ds) == 20


# ---------------------------------------------------------------------------------------------
# projected-gan data


def test_data_command_prepares_the_cache_that_training_maps(tmp_path, capsys, monkeypatch):
    from projected_gan.cli import main
    from tests.test_dataset_json import dataset_tool_zip

    data = dataset_tool_zip(tmp_path / "d.zip", 30, classes=3)
    assert main(["data", str(data), "--resolution", "16", "--conditional"]) == 0
    out = capsys.readouterr().out
    assert "images    30 at 16x16" in out
    assert "classes   3 (from dataset.json): 0: 10, 1: 10, 2: 10" in out
    assert "skipped   0 unreadable" in out and ".raw (" in out and "built in" in out
    [raw] = (tmp_path / "cache").rglob("*.raw")
    both = raw.stat().st_size + raw.with_suffix(".json").stat().st_size  # images + sidecar
    assert f"{raw} ({both / 1e3:.1f} kB; built in" in out

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although `projected-gan data` built the cache")

    monkeypatch.setattr(store_module, "decode_into", no_decoding)
    monkeypatch.setattr(load_module, "decode_all", no_decoding)
    spec_like = load_image_dataset(data, 16, conditional=False, workers=2)  # what training does
    assert spec_like.cache_file == raw
    assert main(["data", str(data), "--resolution", "16"]) == 0
    assert "already built" in capsys.readouterr().out


def test_data_command_input_errors_exit_2(tmp_path, capsys):
    from projected_gan.cli import main

    assert main(["data", str(tmp_path / "missing"), "--resolution", "16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing does not exist" in err
