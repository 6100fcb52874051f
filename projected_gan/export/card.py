"""The model card of an export folder: a ``README.md`` written from its ``config.json``.

Also gathers what the card reports about training from a checkpoint and its run folder: images
seen, the data folder and its image count, the spec, and the last metric values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from projected_gan.checkpoint import Checkpoint

__all__ = ["run_folder_of", "training_record", "write_card_text"]

# Feature space of each metric key that ``metrics.jsonl`` can hold (fd/kid: the spec's network).
_FID_SPACE = "Inception-v3 pool3 (torch-fidelity)"


def run_folder_of(checkpoint_path: Path) -> Path:
    """The run folder holding a snapshot (``<run>/checkpoints/snapshot-*.safetensors``)."""
    parent = checkpoint_path.parent
    return parent.parent if parent.name == "checkpoints" else parent


def _last_metrics(run_dir: Path, nimg: int | None) -> dict[str, Any] | None:
    """The newest record of ``metrics.jsonl`` at or before ``nimg`` images (torn lines skipped)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    best = None
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        kimg = record.get("kimg") if isinstance(record, dict) else None
        if not isinstance(kimg, (int, float)):
            continue
        if nimg is not None and kimg * 1000 > nimg + 0.5:
            continue  # evaluated after this checkpoint
        if best is None or kimg >= best["kimg"]:
            best = record
    return best


def _count_images(data: dict[str, Any]) -> int | None:
    """Image files at the spec's data path today (capped by ``max_images``), None if unreadable."""
    from projected_gan.data import default_dataset_path
    from projected_gan.data.files import open_source

    path = Path(data["path"]) if data.get("path") else default_dataset_path()
    try:
        source = open_source(path)
    except (OSError, ValueError):
        return None
    try:
        count = len(source.members)
    finally:
        source.close()
    cap = data.get("max_images")
    return min(count, cap) if isinstance(cap, int) else count


def training_record(ckpt: Checkpoint, model: str) -> dict[str, Any]:
    """What the card says about training, from a checkpoint's metadata and its run folder."""
    meta = ckpt.meta
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else None
    nimg = meta.get("nimg")
    record: dict[str, Any] = {
        "checkpoint": ckpt.path.name,
        "model": model,
        "images_seen": nimg,
        "library_version": meta.get("version"),
        "spec": spec,
    }
    data = (spec or {}).get("data") or {}
    num_images, how = meta.get("data_images"), "decoded for training"
    if num_images is None and spec is not None:
        num_images, how = _count_images(data), "image files found at export time"
    record["data"] = {
        "name": Path(data["path"]).name if data.get("path") else "flowers64.zip (shipped)",
        "path": data.get("path"),
        "num_images": num_images,
        "counted": how if num_images is not None else None,
    }
    metrics = _last_metrics(run_folder_of(ckpt.path), nimg if isinstance(nimg, int) else None)
    if metrics is not None:
        spec_metrics = (spec or {}).get("metrics") or {}
        network = spec_metrics.get("feature_network", "unknown")
        values = {
            k: v
            for k, v in metrics.items()
            if k not in ("kimg", "seconds", "eval_seconds") and isinstance(v, (int, float))
        }
        record["metrics"] = {
            "kimg": metrics["kimg"],
            "values": values,
            "feature_spaces": {k: _FID_SPACE if k == "fid" else network for k in values},
            "num_images": spec_metrics.get("num_images"),
        }
    return record


_USAGE = {
    "safetensors": [
        "import torch, projected_gan",
        'G = projected_gan.load_generator("THIS_FOLDER")',
        "z = torch.randn(4, G.z_dim)",
        "images = G(z, c).clamp(-1, 1)  # c: None, or class indices (B,) / one-hot (B, c_dim)",
    ],
    "onnx": [
        "import numpy as np, onnxruntime",
        'session = onnxruntime.InferenceSession("THIS_FOLDER/model.onnx")',
        "feed = {'z': np.random.randn(4, Z_DIM).astype(np.float32)}  # + 'c': one-hot (B, c_dim)",
        "images = session.run(None, feed)[0]  # (4, C, R, R) in [-1, 1]",
    ],
    "torchscript": [
        "import torch",
        'G = torch.jit.load("THIS_FOLDER/model.torchscript.pt")',
        "images = G(torch.randn(4, Z_DIM))  # + one-hot c (B, c_dim) when conditional",
    ],
}


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_card_text(config: dict[str, Any], samples_name: str | None) -> str:
    """Markdown model card for an export folder, from its ``config.json`` contents."""
    gen, iface, exp = config["generator"], config["interface"], config["export"]
    training = config.get("training") or {}
    res = iface["img_resolution"]
    classes = f"{iface['c_dim']} classes" if iface["c_dim"] else "unconditional"
    graph = exp["format"] != "safetensors"
    labels = f", c `(B, {iface['c_dim']})` one-hot float32" if iface["c_dim"] else ""
    rows = [
        ("generator", f"`{gen['name']}` ({iface['num_params'] / 1e6:.2f} M parameters)"),
        ("resolution", f"{res}x{res}, {iface['img_channels']} channel(s)"),
        ("inputs", f"z `(B, {iface['z_dim']})` ~ N(0, I){labels}; {classes}"),
        (
            "output",
            "images `(B, C, H, W)` float32 in [-1, 1]"
            if graph
            else "`G(z, c)`: images `(B, C, H, W)` in about [-1, 1] (clamp before display)",
        ),
        ("format", f"{exp['format']} (`{exp['file']}`)"),
        (
            "truncation psi",
            _fmt(exp["truncation_psi"])
            + (" (baked into the graph)" if graph else " (for the samples; `G(z, c, psi)`)"),
        ),
        (
            "per-layer noise",
            f"{exp['noise_mode']} (baked into the graph)"
            if graph
            else f"{exp['noise_mode']} for the samples; `G(z, c, noise_mode=...)`",
        ),
    ]
    check = exp.get("check")
    if check:
        rows.append(
            (
                "checked against PyTorch",
                f"max abs diff {check['max_abs_diff']:.3g} on {check['batch']} images "
                f"({check['runtime']}, tolerance {check['tolerance']:g})",
            )
        )
    if training:
        seen = training.get("images_seen")
        rows.append(
            (
                "training images seen",
                "unknown" if seen is None else f"{seen} ({seen / 1000:g} kimg)",
            )
        )
        data = training.get("data") or {}
        count = data.get("num_images")
        count_text = "unknown count" if count is None else f"{count} images ({data['counted']})"
        rows.append(("data", f"`{data.get('name')}`, {count_text}"))
        rows.append(("exported from", f"`{training['checkpoint']}` ({training['model']})"))
        official = training.get("official")
        if official:
            rows.append(
                (
                    "converted from",
                    f"an official Projected GAN network pickle (--cfg={official['cfg']}, sha256 "
                    f"`{official['sha256'][:16]}...`)",
                )
            )
    lines = [
        f"# `{gen['name']}` generator, {res}x{res}",
        "",
        f"Exported with projected-gan {config['library_version']}. Load it with "
        f"`projected_gan.load_generator(folder)`; `config.json` names the registered generator "
        "and its constructor arguments.",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        "## Use",
        "",
        "```python",
        *(line.replace("Z_DIM", str(iface["z_dim"])) for line in _USAGE[exp["format"]]),
        "```",
        "",
        "## Metrics",
        "",
    ]
    metrics = training.get("metrics")
    if not training:
        lines.append("Exported from a module without a training record.")
    elif metrics:
        lines += [
            f"Last evaluation during training, at kimg {metrics['kimg']:g}, "
            f"{metrics.get('num_images') or '?'} generated images (lower is better).",
            "",
            "| metric | value | feature space |",
            "| --- | --- | --- |",
            *(
                f"| {k} | {_fmt(v)} | {metrics['feature_spaces'][k]} |"
                for k, v in metrics["values"].items()
            ),
        ]
    elif training.get("official"):
        best = training["official"].get("best_fid50k_full_so_far")
        lines.append(
            "The official pickle records no metric of this snapshot"
            + ("." if best is None else f"; the best fid50k_full of its run so far was {best:g}.")
        )
    else:
        lines.append("No metrics were computed during training.")
    if samples_name:
        seeds = exp["sample_seeds"]
        lines += [
            "",
            "## Samples",
            "",
            f"![samples]({samples_name})",
            "",
            f"Seeds {seeds[0]}-{seeds[-1]}, truncation psi {_fmt(exp['truncation_psi'])}"
            + (", class = seed mod classes" if iface["c_dim"] else "")
            + ".",
        ]
    if training.get("spec"):
        lines += ["", "## Training spec", "", "```yaml", yaml.safe_dump(training["spec"]).rstrip()]
        lines.append("```")
    return "\n".join(lines) + "\n"
