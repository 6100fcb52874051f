"""Export folders: write one (``config.json``, model file, card, samples), read one back."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from projected_gan._version import __version__
from projected_gan.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from projected_gan.checkpoint import (
    CheckpointError,
    generator_config,
    resolve_checkpoint,
)
from projected_gan.errors import ReadError
from projected_gan.export.card import training_record, write_card_text
from projected_gan.export.graphs import (
    Sampler,
    missing_onnx_module,
    run_onnx,
    run_torchscript,
    write_onnx,
    write_torchscript,
)
from projected_gan.fitting import build_checked
from projected_gan.generators.sampling import image_size, latents_from_seeds
from projected_gan.images import save_image_grid, to_uint8
from projected_gan.registry import part_config
from projected_gan.safejson import JSONFileError, read_json

__all__ = [
    "CONFIG_NAME",
    "EXPORT_FILES",
    "ExportError",
    "ExportResult",
    "ExportedWeights",
    "export_checkpoint",
    "export_generator",
    "is_export_dir",
    "load_exported_generator",
    "read_export_config",
    "read_exported_weights",
]

FORMAT = "projected-gan-export/1"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
SAMPLES_NAME = "samples.png"
EXPORT_FILES = {
    "safetensors": "model.safetensors",
    "onnx": "model.onnx",
    "torchscript": "model.torchscript.pt",
}
DEFAULT_TOLERANCE = 1e-3
TRACE_BATCH = 2  # graphs are traced at this batch and checked at another (dynamic batch)


class ExportError(ReadError):
    """An export that cannot be made or read: bad folder, missing extra, config, failed check.

    An input error: the command line reports it in one line with exit code 2."""


@dataclass
class ExportResult:
    """What :func:`export_generator` wrote, and how far the export is from PyTorch."""

    folder: Path
    format: str
    files: list[Path] = field(default_factory=list)
    max_abs_diff: float = 0.0

    @property
    def model_file(self) -> Path:
        return self.folder / EXPORT_FILES[self.format]

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


# ------------------------------------------------------------------------------- reading


def is_export_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding an export's ``config.json``."""
    return (Path(path) / CONFIG_NAME).is_file()


def read_export_config(folder: str | Path) -> dict[str, Any]:
    """The checked ``config.json`` of an export folder."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise ExportError(f"{folder} is not an export folder: it has no {CONFIG_NAME}")
    try:
        config = read_json(path)
    except JSONFileError as exc:
        raise ExportError(str(exc)) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise ExportError(f"{path}: format {found!r}, expected {FORMAT!r}")
    gen = config.get("generator")
    if not isinstance(gen, dict) or not isinstance(gen.get("name"), str):
        raise ExportError(f"{path}: 'generator' must hold the registered 'name' and 'kwargs'")
    if gen.get("kind", "generators") != "generators" or not isinstance(gen.get("kwargs"), dict):
        raise ExportError(f"{path}: 'generator' must be kind 'generators' with a 'kwargs' object")
    return config


@dataclass
class ExportedWeights:
    """An export folder's checked ``config.json`` and the tensors of its model file."""

    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    path: Path  # the model file read
    sha256: str  # of its bytes


def read_exported_weights(folder: str | Path) -> ExportedWeights:
    """The config and G_ema state dict of a safetensors export, without building the generator."""
    folder = Path(folder)
    config = read_export_config(folder)
    weights = folder / EXPORT_FILES["safetensors"]
    if not weights.is_file():
        fmt = (config.get("export") or {}).get("format", "?")
        raise ExportError(
            f"{folder} is a {fmt} export without {weights.name}: load "
            f"{EXPORT_FILES.get(fmt, 'its model file')} with its runtime, or re-export with "
            "--format safetensors"
        )
    data = weights.read_bytes()
    try:
        state = st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise ExportError(f"{weights} is not a readable safetensors file: {exc}") from None
    return ExportedWeights(config, state, weights, hashlib.sha256(data).hexdigest())


def load_exported_generator(folder: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild an exported generator from ``config.json`` + ``model.safetensors``, in eval mode.

    Needs neither the training spec nor the discriminator: the registry builds the generator
    named in the config with its recorded constructor arguments.
    """
    folder = Path(folder)
    exported = read_exported_weights(folder)
    G = build_checked(
        exported.config["generator"], exported.state, str(folder / CONFIG_NAME), error=ExportError
    )
    return G.eval().requires_grad_(False).to(device)


# ----------------------------------------------------------------------------- checkpoints


def export_checkpoint(
    path: str | Path,
    out_dir: str | Path,
    *,
    format: str = "safetensors",
    truncation_psi: float = 1.0,
    model: str = "G_ema",
    num_samples: int = 16,
) -> ExportResult:
    """Export ``model`` of a checkpoint file or run folder (its newest usable snapshot)."""
    ckpt = resolve_checkpoint(path)
    config = generator_config(ckpt)  # G and G_ema share one architecture
    if model not in ckpt.models:
        raise CheckpointError(f"{ckpt.path} has no {model} weights")
    G = build_checked(config, ckpt.models[model], f"{ckpt.path} [{model}]", error=CheckpointError)
    return export_generator(
        G,
        out_dir,
        format=format,
        truncation_psi=truncation_psi,
        config=config,
        training=training_record(ckpt, model),
        num_samples=num_samples,
    )


# ------------------------------------------------------------------------------- exporting


def _example_inputs(G: nn.Module, seeds: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """z for ``seeds`` and, when conditional, one-hot labels ``seed % c_dim`` (float32)."""
    z = latents_from_seeds(list(seeds), G.z_dim)
    if not getattr(G, "c_dim", 0):
        return (z,)
    labels = torch.tensor(list(seeds)) % G.c_dim
    return z, torch.nn.functional.one_hot(labels, G.c_dim).float()


def _check_config(G: nn.Module, config: dict[str, Any] | None) -> dict[str, Any]:
    config = config if config is not None else part_config(G)
    if config is None:
        raise ExportError(
            f"{type(G).__name__} was not built by the registry, so its constructor arguments are "
            "unknown: build it with projected_gan.create('generators', name, ...) or pass "
            "config={'kind': 'generators', 'name': ..., 'kwargs': {...}}"
        )
    if config.get("kind") != "generators":
        raise ExportError(f"config kind {config.get('kind')!r}: only generators can be exported")
    for key, value in config["kwargs"].items():
        try:
            json.dumps(value)
        except TypeError:
            raise ExportError(
                f"generator argument {key}={value!r} cannot be written to {CONFIG_NAME} "
                "(only JSON values: numbers, strings, lists, dicts, null)"
            ) from None
    return {"kind": "generators", "name": config["name"], "kwargs": dict(config["kwargs"])}


def _prepare_folder(out_dir: Path) -> None:
    """Refuse a folder holding anything but a previous export; drop that export's files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"OUT_DIR {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_export_dir(out_dir):
        raise ExportError(
            f"OUT_DIR {out_dir} is not empty and holds no export ({CONFIG_NAME}); "
            "pick a new or empty folder"
        )


def _work_folder(out_dir: Path) -> Path:
    """A new hidden folder beside ``out_dir``: the export is written and checked there."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))


def _publish(work: Path, out_dir: Path) -> None:
    """Move a checked export from ``work`` to ``out_dir`` (renamed whole when new; else file by
    file, after the previous export's files, so that a re-export leaves nothing stale)."""
    if not out_dir.exists():
        os.replace(work, out_dir)
        return
    for name in (*EXPORT_FILES.values(), SAMPLES_NAME, CARD_NAME):
        with contextlib.suppress(FileNotFoundError):
            (out_dir / name).unlink()
    names = sorted(p.name for p in work.iterdir())
    for name in sorted(names, key=lambda n: n == CONFIG_NAME):  # config.json last
        os.replace(work / name, out_dir / name)
    work.rmdir()


def _write_config(out_dir: Path, record: dict[str, Any]) -> Path:
    path = out_dir / CONFIG_NAME
    atomic_write_json(path, record)
    return path


def export_generator(
    G: nn.Module,
    out_dir: str | Path,
    *,
    format: str = "safetensors",
    truncation_psi: float = 1.0,
    config: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    check_batch: int = 5,
    num_samples: int = 16,
) -> ExportResult:
    """Write ``G`` to ``out_dir`` as ``format`` with ``config.json``, a model card and samples.

    Args:
        G: a generator built by the registry (or pass ``config``), on any device.
        format: ``"safetensors"`` | ``"onnx"`` | ``"torchscript"``.
        truncation_psi: baked into ONNX/TorchScript graphs; the psi of the card's samples.
            Only generators with a tracked ``w_avg`` (StyleGAN2) can truncate.
        config: ``{"kind": "generators", "name", "kwargs"}``; default ``part_config(G)``.
        training: provenance for the card (see :func:`projected_gan.export.training_record`).
        tolerance: largest max abs difference to PyTorch accepted by the export-time check.
        check_batch: images in that check (graphs are traced at batch 2, so not 2).
        num_samples: images in ``samples.png`` (0: none).

    Raises:
        ExportError: bad format, folder, config or truncation, or a check over ``tolerance``.
    """
    if format not in EXPORT_FILES:
        raise ExportError(f"format must be one of {', '.join(EXPORT_FILES)}, got {format!r}")
    config = _check_config(G, config)
    has_w_avg = any(name.endswith("w_avg") for name, _ in G.named_buffers())
    if truncation_psi != 1.0 and not has_w_avg:
        raise ExportError(
            f"--trunc {truncation_psi}: {config['name']!r} has no mapping network (no w_avg), "
            "so truncation does not apply; export with psi 1"
        )
    if not isinstance(check_batch, int) or check_batch < 1 or check_batch == TRACE_BATCH:
        raise ExportError(f"check_batch must be a positive int other than {TRACE_BATCH}")
    if format == "onnx" and (missing := missing_onnx_module()) is not None:
        raise ExportError(
            f"--format onnx needs the optional extra ({missing} is missing): "
            "pip install 'projected-gan[onnx]'"
        )
    out_dir = Path(out_dir)
    _prepare_folder(out_dir)
    work = _work_folder(out_dir)  # nothing reaches OUT_DIR unless the export passes its check
    try:
        result = _export_into(
            G, work, format, truncation_psi, config, training, tolerance, check_batch, num_samples
        )
        _publish(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    files = [out_dir / p.name for p in result.files]
    return ExportResult(out_dir, format, files=files, max_abs_diff=result.max_abs_diff)


def _export_into(
    G: nn.Module,
    out_dir: Path,
    format: str,
    truncation_psi: float,
    config: dict[str, Any],
    training: dict[str, Any] | None,
    tolerance: float,
    check_batch: int,
    num_samples: int,
) -> ExportResult:
    """The export written into the (new, empty) folder ``out_dir`` and checked there."""
    G = copy.deepcopy(G).cpu().eval().requires_grad_(False)  # exports are made and checked on CPU
    sampler = Sampler(G, truncation_psi).eval()
    model_path = out_dir / EXPORT_FILES[format]
    check_inputs = _example_inputs(G, range(check_batch))
    with torch.no_grad():
        expected = sampler(*check_inputs)
        if format == "safetensors":
            state = {k: v.detach().contiguous().clone() for k, v in G.state_dict().items()}
            atomic_write_bytes(model_path, st_save(state, metadata={"format": FORMAT}))
        elif format == "onnx":
            write_onnx(sampler, _example_inputs(G, range(TRACE_BATCH)), model_path)
        else:
            write_torchscript(sampler, _example_inputs(G, range(TRACE_BATCH)), model_path)

    c_dim = int(getattr(G, "c_dim", 0))
    h, w = image_size(G)
    record: dict[str, Any] = {
        "format": FORMAT,
        "library_version": __version__,
        "generator": config,
        "interface": {
            "z_dim": int(G.z_dim),
            "c_dim": c_dim,
            # one side when square (as before), else [H, W]; img_size is always [H, W]
            "img_resolution": h if h == w else [h, w],
            "img_size": [h, w],
            "img_channels": int(G.img_channels),
            "num_params": sum(p.numel() for p in G.parameters()),
            "inputs": ["z"] + (["c (one-hot float32)"] if c_dim else []),
        },
        "export": {
            "format": format,
            "file": model_path.name,
            "truncation_psi": float(truncation_psi),
            "noise_mode": sampler.noise_mode,
            "sample_seeds": list(range(num_samples)),
        },
    }
    if training is not None:
        record["training"] = training
    # config.json first, so that a safetensors folder can be reloaded for the check.
    config_path = _write_config(out_dir, record)
    with torch.no_grad():
        if format == "safetensors":
            actual = Sampler(load_exported_generator(out_dir), truncation_psi)(*check_inputs)
            runtime = "reloaded with load_generator"
        elif format == "onnx":
            import onnxruntime

            actual = run_onnx(model_path, check_inputs)
            runtime = f"onnxruntime {onnxruntime.__version__}"
        else:
            actual = run_torchscript(model_path, check_inputs)
            runtime = f"torch.jit.load, torch {torch.__version__}"
    diff = float((actual.float() - expected.float()).abs().max())
    if not diff <= tolerance:  # also catches NaN
        raise ExportError(
            f"the {format} export differs from PyTorch by {diff:.3g} (max abs) on "
            f"{check_batch} images, over the tolerance {tolerance:g}; {model_path} is not usable"
        )
    record["export"]["check"] = {
        "max_abs_diff": diff,
        "batch": check_batch,
        "tolerance": tolerance,
        "runtime": runtime,
    }
    _write_config(out_dir, record)
    files = [model_path, config_path]
    samples = None
    if num_samples > 0:
        with torch.no_grad():
            images = sampler(*_example_inputs(G, range(num_samples)))
        save_image_grid(to_uint8(images), out_dir / SAMPLES_NAME)
        samples = SAMPLES_NAME
        files.append(out_dir / SAMPLES_NAME)
    atomic_write_text(out_dir / CARD_NAME, write_card_text(record, samples))
    files.append(out_dir / CARD_NAME)
    return ExportResult(folder=out_dir, format=format, files=files, max_abs_diff=diff)
