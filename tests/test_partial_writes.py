"""Atomic writes: file modes follow the umask, and a killed write's temp file is cleaned up."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from projected_gan.atomic import TEMP_NAME_RE, atomic_write, remove_partial_writes, temp_name
from projected_gan.checkpoint import find_checkpoints, load_checkpoint, save_checkpoint
from projected_gan.images import save_image_grid

ROOT = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class _Umask:
    def __init__(self, mask: int) -> None:
        self.mask = mask

    def __enter__(self) -> None:
        self.old = os.umask(self.mask)

    def __exit__(self, *exc) -> None:
        os.umask(self.old)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_sample_png_and_checkpoint_follow_the_umask(tmp_path, umask, expected):
    with _Umask(umask):
        png = tmp_path / "samples" / "fakes000000.png"
        save_image_grid(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), png)
        ckpt = tmp_path / "checkpoints" / "snapshot-000000016.safetensors"
        save_checkpoint(ckpt, models={"G": torch.nn.Linear(2, 2)}, meta={"nimg": 16})
        with open(tmp_path / "plain.txt", "w") as f:  # what a plain open() gives, for reference
            f.write("x")
    assert _mode(png) == expected
    assert _mode(ckpt) == expected
    assert _mode(tmp_path / "plain.txt") == expected
    assert load_checkpoint(ckpt).meta["nimg"] == 16


def test_the_writer_names_its_temp_file_by_the_shared_pattern(tmp_path):
    seen = []
    target = tmp_path / "snapshot-000000432.safetensors"
    with atomic_write(target, before_replace=lambda: seen.extend(os.listdir(tmp_path))) as f:
        f.write(b"data")
    assert len(seen) == 1 and seen[0] != target.name
    m = TEMP_NAME_RE.match(seen[0])
    assert m and m.group("target") == target.name
    assert os.listdir(tmp_path) == [target.name]
    # A name of the form earlier versions left (tempfile.mkstemp's token) matches as well.
    assert TEMP_NAME_RE.match(".snapshot-000000432.safetensors.k_3x9qz0.tmp")


def _leave_partial_write(target: Path) -> None:
    """Start an atomic write in a child process and kill it between the write and the rename."""
    code = textwrap.dedent(
        f"""
        import os
        from projected_gan.atomic import atomic_write
        with atomic_write({str(target)!r}, before_replace=lambda: os._exit(9)) as f:
            f.write(b"x" * 1000)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=120)
    assert proc.returncode == 9


def test_cleaner_removes_only_what_the_writer_left(tmp_path):
    run = tmp_path / "run"
    _leave_partial_write(run / "checkpoints" / "snapshot-000000432.safetensors")
    (left,) = (run / "checkpoints").iterdir()
    assert TEMP_NAME_RE.match(left.name) and left.stat().st_size == 1000
    extra_temp = run / "samples" / temp_name("fakes000001.png", "abcd1234")
    extra_temp.parent.mkdir()
    extra_temp.write_bytes(b"y" * 24)
    unrelated = [
        run / "notes.tmp",
        run / ".hidden",
        run / ".spec.yaml.tmp",  # no token
        run / ".spec.yaml.ab12.tmp",  # token too short
        run / ".spec.yaml.AB12CD34.tmp",  # not the token alphabet
        run / "checkpoints" / "snapshot-000000016.safetensors",
        run / "checkpoints" / "snapshot-000000016.safetensors.tmp",
        run / "deep" / "er" / temp_name("x.png", "abcd1234"),  # below the first level
    ]
    for p in unrelated:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"keep")
    linked = run / temp_name("link.png", "zzzz0000")
    linked.symlink_to(run / "notes.tmp")

    lines = []
    removed = remove_partial_writes(run, report=lines.append)
    assert sorted(p for p, _ in removed) == sorted([left, extra_temp])
    assert sorted(size for _, size in removed) == [24, 1000]
    assert not left.exists() and not extra_temp.exists()
    assert all(p.read_bytes() == b"keep" for p in unrelated)
    assert linked.is_symlink()
    assert len(lines) == 1 and "removed 2 partial file(s)" in lines[0]
    assert left.name in lines[0]
    # Nothing left to do: no second report.
    assert remove_partial_writes(run, report=lines.append) == [] and len(lines) == 1


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_resume_removes_a_leftover_partial_checkpoint_and_keeps_other_files(tmp_path, capsys):
    from projected_gan import ExperimentSpec, build_from_spec
    from projected_gan.training import Trainer
    from tests.conftest import tiny_overrides

    spec = ExperimentSpec.load(preset="minimal_cpu", overrides=tiny_overrides(tmp_path))
    with _Umask(0o027):
        trainer = build_from_spec(spec)
        trainer.fit(kimg=0.008, progress=False)
        run = trainer.run_dir
        del trainer
        (good,) = find_checkpoints(run)
        # What a kill between write and rename leaves: the next snapshot's temp file.
        partial = run / "checkpoints" / temp_name("snapshot-000000016.safetensors", "q7_k2m9x")
        partial.write_bytes(good.read_bytes()[:5000])
        mine = [run / "notes.txt", run / "checkpoints" / "backup.tmp"]
        for p in mine:
            p.write_text("mine")
        capsys.readouterr()

        resumed = Trainer.resume(run)
        assert resumed.nimg == 8
        resumed.fit(progress=False)
    out = capsys.readouterr().out
    assert not partial.exists()
    assert all(p.read_text() == "mine" for p in mine)
    assert "removed 1 partial file(s)" in out and partial.name in out
    assert load_checkpoint(find_checkpoints(run)[0]).meta["nimg"] == 16
    # Every file of the run, atomic or appended (log.jsonl), has the umask's mode.
    written = [p for p in run.rglob("*") if p.is_file() and p not in mine]
    assert {p.relative_to(run).as_posix() for p in written} >= {"spec.yaml", "log.jsonl"}
    assert {_mode(p) for p in written} == {0o640}, {p.name: oct(_mode(p)) for p in written}
