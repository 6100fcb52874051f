"""One answer to "what is at this path": ``projected_gan.sources.identify`` tells a run folder,
a checkpoint, an export folder and a network pickle apart by content, and every command that
takes trained weights (generate, eval, export, convert, --init, --resume) agrees with it."""

from __future__ import annotations

import math
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

import projected_gan as pg
from projected_gan import sources
from projected_gan.checkpoint import load_checkpoint
from projected_gan.commands.evaluation import evaluate_checkpoint
from projected_gan.commands.models import export
from projected_gan.data import default_dataset_path
from projected_gan.inference import load_generator
from projected_gan.training.init_source import read_init_source
from tests import official_structure as official
from tests.test_init_from import tiny_spec
from tests.test_official import _fastgan
from tests.test_user_errors import one_line_exit_2, run_main


def pad_safetensors_header(src, dst, low16: int = 0x0480) -> None:
    """Copy a safetensors file with its JSON header padded (spaces, as safetensors itself pads)
    to a length whose two low bytes are ``low16``: 0x0480 makes the file start ``80 04``, the
    start of a protocol-4 pickle."""
    data = src.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = data[8 : 8 + n].rstrip(b" ")
    target = len(header) + ((low16 - len(header)) % 65536)
    dst.write_bytes(struct.pack("<Q", target) + header.ljust(target, b" ") + data[8 + n :])


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """Each kind of path, from a one-step tiny run and a test-written official pickle:
    {label: (path, expected kind, the G_ema it holds)}."""
    out = tmp_path_factory.mktemp("sources")
    trainer = pg.build_from_spec(tiny_spec(out / "runs"))
    trainer.step()
    ckpt = trainer.save()
    padded = out / "padded.safetensors"
    pad_safetensors_header(ckpt, padded)
    assert padded.read_bytes()[:2] == b"\x80\x04"  # what a protocol-4 pickle starts with
    exported = out / "export"
    pg.export.export_checkpoint(ckpt, exported, num_samples=0)

    G = _fastgan("fastgan_lite", 0, 6)
    G_ema = _fastgan("fastgan_lite", 0, 7)
    data = official.snapshot(official.fastgan_generator(G), official.fastgan_generator(G_ema), None)
    pkl = official.dump(data, out / "network-snapshot.pkl")
    as_pickle = out / "best_model.pickle"
    shutil.copy(pkl, as_pickle)
    ours = trainer.G_ema.eval()
    return {
        "run": (trainer.run_dir, sources.RUN, ours),
        "checkpoint 80 04": (padded, sources.CHECKPOINT, ours),
        "export": (exported, sources.EXPORT, ours),
        ".pkl": (pkl, sources.NETWORK_PICKLE, G_ema),
        ".pickle": (as_pickle, sources.NETWORK_PICKLE, G_ema),
    }


def assert_same_generator(G, G_ref) -> None:
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(1)
        mine = G(z)
        torch.manual_seed(1)
        ref = G_ref(z)
    torch.testing.assert_close(mine, ref, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def few_reals(tmp_path_factory):
    """16 of the shipped images (the fewest a dataset takes): cheap real statistics."""
    folder = tmp_path_factory.mktemp("few_reals")
    with zipfile.ZipFile(default_dataset_path()) as z:
        names = [n for n in z.namelist() if n.lower().endswith((".png", ".jpg", ".jpeg"))]
        for i, name in enumerate(sorted(names)[:16]):
            (folder / f"{i:02d}{Path(name).suffix}").write_bytes(z.read(name))
    return folder


LABELS = ["run", "checkpoint 80 04", "export", ".pkl", ".pickle"]


def test_identify_by_content(tmp_path):
    st = tmp_path / "weights.bin"  # a safetensors file, whatever its name
    header = b'{"__metadata__":{}}'
    st.write_bytes(struct.pack("<Q", len(header)) + header)
    assert sources.identify(st) == sources.CHECKPOINT
    bare = tmp_path / "snapshot.bin"  # a pickle by its header, whatever its name
    bare.write_bytes(pickle.dumps({}, protocol=4))
    assert sources.identify(bare) == sources.NETWORK_PICKLE
    named = tmp_path / "junk.pkl"  # named a pickle: the pickle reader says what is wrong
    named.write_bytes(b"hello")
    assert sources.identify(named) == sources.NETWORK_PICKLE
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert sources.identify(tmp_path / "run") == sources.RUN
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.json").write_text("{}")
    assert sources.identify(tmp_path / "exp") == sources.EXPORT
    # a header length longer than the file is no safetensors file
    lying = tmp_path / "lying.safetensors"
    lying.write_bytes(struct.pack("<Q", 10**6) + b"{}")
    for bad, needle in (
        (tmp_path / "nope", "does not exist"),
        (tmp_path / "exp" / "config.json", "neither a checkpoint"),
        (lying, "neither a checkpoint"),
        (tmp_path, "neither a run folder"),
    ):
        with pytest.raises(sources.SourceError, match=needle) as info:
            sources.identify(bad, field="CHECKPOINT")
        assert str(bad) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("label", LABELS)
def test_generate_init_and_identify_agree(paths, label):
    path, kind, G_ref = paths[label]
    assert sources.identify(path) == kind
    # generate / interpolate: the G_ema it holds, exactly
    G = load_generator(path)
    assert_same_generator(G, G_ref)
    # --init: the same kind, the same G_ema tensors
    init = read_init_source(path)
    assert init.kind == {sources.NETWORK_PICKLE: "official_pickle"}.get(kind, kind)
    for name, value in G.state_dict().items():
        torch.testing.assert_close(init.models["G_ema"][name], value.cpu(), rtol=0, atol=0)


def test_the_padded_checkpoint_is_a_valid_checkpoint(paths):
    path, _, _ = paths["checkpoint 80 04"]
    ckpt = load_checkpoint(path)
    assert {"G", "G_ema", "D"} <= set(ckpt.models)


@pytest.mark.parametrize("label", LABELS)
def test_export_and_eval_agree(paths, label, few_reals, tmp_path, capsys):
    path, _, G_ref = paths[label]
    out = export(str(path), str(tmp_path / "exported"))
    assert_same_generator(load_generator(out), G_ref)
    results = evaluate_checkpoint(
        str(path),
        data=str(few_reals),
        metrics="fd",
        num=4,
        batch=4,
        feature_network="tf_efficientnet_lite0",
    )
    assert set(results) == {"fd"} and math.isfinite(results["fd"])


@pytest.mark.parametrize("label", LABELS)
def test_convert_and_resume_take_their_own_kind_and_name_the_others(paths, label, capsys):
    path, kind, _ = paths[label]
    out = paths["run"][0].parent / f"converted-{LABELS.index(label)}"
    code, _, err = run_main(capsys, "convert", str(path), str(out))
    if kind == sources.NETWORK_PICKLE:
        assert code == 0, err
    else:
        one_line_exit_2(code, err)
        assert sources.describe_kind(kind) in err and "convert takes a network pickle" in err
    if kind != sources.RUN:
        code, _, err = run_main(capsys, "train", "--resume", str(path))
        one_line_exit_2(code, err)
        assert sources.describe_kind(kind) in err and "--resume takes a run folder" in err
