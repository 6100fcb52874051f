"""Our generator from an official network pickle, and the pickle as an export folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from projected_gan.export import ExportResult, export_generator
from projected_gan.official.reader import OfficialNetworks, read_network_pickle
from projected_gan.official.unpickle import OfficialPickleError
from projected_gan.registry import create_from_config

__all__ = ["convert_network_pickle", "generator_from_pickle", "official_training_record"]

MODELS = ("G_ema", "G")


def generator_from_pickle(
    source: str | os.PathLike | OfficialNetworks,
    *,
    model: str = "G_ema",
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Our generator holding ``model`` (``"G_ema"`` or ``"G"``) of an official network pickle,
    in eval mode on ``device``. ``G(z, c)`` gives ``(B, 3, R, R)`` in about [-1, 1].

    Tensors the official network does not have (``info["models"][model]["left_at_init"]``:
    FastGAN's constant noise buffers, ...) keep their initial values.
    """
    nets = source if isinstance(source, OfficialNetworks) else read_network_pickle(source)
    if model not in MODELS:
        raise OfficialPickleError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    if model not in nets.models:
        raise OfficialPickleError(f"{nets.path} holds no {model}")
    G = create_from_config(nets.generator)
    result = G.load_state_dict(nets.models[model], strict=False)
    left = set(nets.info["models"][model]["left_at_init"])
    # BatchNorm fills a missing num_batches_tracked itself, so only a subset is reported
    if result.unexpected_keys or not set(result.missing_keys) <= left:
        raise OfficialPickleError(  # the reader checked this; a failure here is a mapping bug
            f"{nets.path} [{model}] does not fill our {nets.generator['name']}: missing "
            f"{sorted(set(result.missing_keys) - left)[:3]}, unexpected "
            f"{result.unexpected_keys[:3]}"
        )
    return G.eval().requires_grad_(False).to(device)


def official_training_record(nets: OfficialNetworks, model: str) -> dict[str, Any]:
    """What an export's model card says about a network pickle's training."""
    info = nets.info
    data = info.get("training_set_kwargs") or {}
    kimg = info.get("kimg")
    record: dict[str, Any] = {
        "checkpoint": nets.path.name,
        "model": model,
        "images_seen": None if kimg is None else round(kimg * 1000),
        "library_version": None,
        "spec": None,
        "data": {
            "name": Path(data["path"]).name if data.get("path") else None,
            "path": data.get("path"),
            "num_images": data.get("max_size"),
            "counted": "as the official training recorded it",
        },
        "official": {
            "file": nets.path.name,
            "sha256": nets.sha256,
            "cfg": info["cfg"],
            "feature_network": info.get("feature_network"),
        },
    }
    if info.get("best_fid50k_full") is not None:
        record["official"]["best_fid50k_full_so_far"] = info["best_fid50k_full"]
    return record


def convert_network_pickle(
    source: str | os.PathLike | OfficialNetworks,
    out_dir: str | os.PathLike,
    *,
    format: str = "safetensors",
    model: str = "G_ema",
    truncation_psi: float = 1.0,
    num_samples: int = 16,
) -> ExportResult:
    """Write ``model`` of an official network pickle (a path, or what
    :func:`~projected_gan.official.read_network_pickle` read) as an export folder
    (``config.json``, the weights or a graph, model card, samples), loadable with
    :func:`projected_gan.load_generator`.

    The folder is checked when written, as every export: the reloaded weights (or the graph)
    run against the converted generator on the same latents.
    """
    nets = source if isinstance(source, OfficialNetworks) else read_network_pickle(source)
    G = generator_from_pickle(nets, model=model)
    return export_generator(
        G,
        out_dir,
        format=format,
        truncation_psi=truncation_psi,
        config=nets.generator,
        training=official_training_record(nets, model),
        num_samples=num_samples,
    )
