"""The model card of an export folder: a ``README.md`` written from its ``config.json``.

Also gathers what the card reports about training from a checkpoint and its run folder: images
seen, the data folder and its image count, the spec, and the last metric values.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import yaml

from projected_gan.checkpoint import Checkpoint
from projected_gan.errors import one_line
from projected_gan.safejson import JSONFileError, loads_bounded
from projected_gan.sizes import as_size

__all__ = ["run_folder_of", "training_record", "write_card_text"]

# Feature space of each metric key that ``metrics.jsonl`` can hold (fd/kid: the spec's network).
_FID_SPACE = "Inception-v3 pool3 (torch-fidelity)"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


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
            record = loads_bounded(line, str(path))
        except JSONFileError:
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
    spec = _dict(meta.get("spec")) or None
    nimg = meta.get("nimg")
    record: dict[str, Any] = {
        "checkpoint": ckpt.path.name,
        "model": model,
        "images_seen": nimg,
        "library_version": meta.get("version"),
        "spec": spec,
    }
    data = _dict((spec or {}).get("data"))
    if not isinstance(data.get("path"), str):  # a crafted spec: no data path to report
        data = {k: v for k, v in data.items() if k != "path"}
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
        spec_metrics = _dict((spec or {}).get("metrics"))
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
        "images = session.run(None, feed)[0]  # (4, C, H, W) in [-1, 1]",
    ],
    "torchscript": [
        "import torch",
        'G = torch.jit.load("THIS_FOLDER/model.torchscript.pt")',
        "images = G(torch.randn(4, Z_DIM))  # + one-hot c (B, c_dim) when conditional",
    ],
}


_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]|])")  # code, emphasis, links/images, table cells


def _text(value: Any, limit: int = 200) -> str:
    """A value from a file as plain Markdown text in a table cell or sentence: one line (no
    heading or block can start), HTML escaped, and the characters that make code, emphasis,
    links, images or table cells backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(one_line(str(value), limit), quote=False))


def _code(value: Any, limit: int = 200) -> str:
    """A value from a file as an inline code span (no backticks or table pipes inside)."""
    text = one_line(str(value), limit).replace("`", "'").replace("|", "\\|")
    text = text.replace("<", "\u2039").replace(">", "\u203a")  # no HTML tag, even where rendered
    return f"`{text}`"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value) if isinstance(value, int) else _text(value)


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``."""
    runs = [len(r) for r in re.findall(r"`+", text)]
    return "`" * max(3, 1 + max(runs, default=0))


def _size(iface: dict[str, Any]) -> tuple[int, int]:
    """``(H, W)`` of an export's interface: ``img_size``, or ``img_resolution`` (one side, as
    exports before non-square sizes recorded it, or ``[H, W]``)."""
    size = iface.get("img_size", iface.get("img_resolution"))
    return as_size(size, "img_size")


def _typed(value: Any, kinds: type | tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in (kinds,))


def clean_training(value: Any) -> dict[str, Any]:
    """The parts of a training record (ours, or one read from a file) that have their types;
    the rest is dropped, so a crafted ``config.json`` cannot break the card."""
    t = _dict(value)
    if not (_typed(t.get("checkpoint"), str) and _typed(t.get("model"), str)):
        return {}
    out = {k: t[k] for k in ("checkpoint", "model")}
    out["images_seen"] = t.get("images_seen") if _typed(t.get("images_seen"), int) else None
    out["library_version"] = t.get("library_version")
    out["spec"] = _dict(t.get("spec")) or None
    data = _dict(t.get("data"))
    count, counted = data.get("num_images"), data.get("counted")
    ok = _typed(count, int) and _typed(counted, str)
    out["data"] = {
        "name": data.get("name") if _typed(data.get("name"), str) else None,
        "path": data.get("path") if _typed(data.get("path"), str) else None,
        "num_images": count if ok else None,
        "counted": counted if ok else None,
    }
    official = _dict(t.get("official"))
    if _typed(official.get("cfg"), str) and _typed(official.get("sha256"), str):
        best = official.get("best_fid50k_full_so_far")
        out["official"] = {**official, "best_fid50k_full_so_far": best}
        if not _typed(best, (int, float)):
            out["official"].pop("best_fid50k_full_so_far")
    metrics = _dict(t.get("metrics"))
    values, spaces = _dict(metrics.get("values")), _dict(metrics.get("feature_spaces"))
    if _typed(metrics.get("kimg"), (int, float)) and all(
        _typed(v, (int, float)) and k in spaces for k, v in values.items()
    ):
        out["metrics"] = {**metrics, "values": values, "feature_spaces": spaces}
    return out


def write_card_text(config: dict[str, Any], samples_name: str | None) -> str:
    """Markdown model card for an export folder, from its ``config.json`` contents."""
    gen, iface, exp = config["generator"], config["interface"], config["export"]
    training = clean_training(config.get("training"))
    h, w = _size(iface)
    res = f"{h}x{w}"
    classes = f"{iface['c_dim']} classes" if iface["c_dim"] else "unconditional"
    graph = exp["format"] != "safetensors"
    labels = f", c `(B, {iface['c_dim']})` one-hot float32" if iface["c_dim"] else ""
    rows = [
        ("generator", f"{_code(gen['name'])} ({iface['num_params'] / 1e6:.2f} M parameters)"),
        ("resolution", f"{res} (height x width), {iface['img_channels']} channel(s)"),
        ("inputs", f"z `(B, {iface['z_dim']})` ~ N(0, I){labels}; {classes}"),
        (
            "output",
            "images `(B, C, H, W)` float32 in [-1, 1]"
            if graph
            else "`G(z, c)`: images `(B, C, H, W)` in about [-1, 1] (clamp before display)",
        ),
        ("format", f"{_text(exp['format'])} ({_code(exp['file'])})"),
        (
            "truncation psi",
            _fmt(exp["truncation_psi"])
            + (" (baked into the graph)" if graph else " (for the samples; `G(z, c, psi)`)"),
        ),
        (
            "per-layer noise",
            f"{_text(exp['noise_mode'])} (baked into the graph)"
            if graph
            else f"{_text(exp['noise_mode'])} for the samples; `G(z, c, noise_mode=...)`",
        ),
    ]
    check = exp.get("check")
    if check:
        rows.append(
            (
                "checked against PyTorch",
                f"max abs diff {check['max_abs_diff']:.3g} on {check['batch']} images "
                f"({_text(check['runtime'])}, tolerance {check['tolerance']:g})",
            )
        )
    if training:
        seen = training.get("images_seen")
        rows.append(
            (
                "training images seen",
                f"{seen} ({seen / 1000:g} kimg)" if type(seen) is int else _fmt(seen or "unknown"),
            )
        )
        data = _dict(training.get("data"))
        count = data.get("num_images")
        count_text = (
            "unknown count" if count is None else f"{_fmt(count)} images ({_text(data['counted'])})"
        )
        rows.append(("data", f"{_code(data.get('name'))}, {count_text}"))
        rows.append(
            ("exported from", f"{_code(training['checkpoint'])} ({_text(training['model'])})")
        )
        official = training.get("official")
        if official:
            rows.append(
                (
                    "converted from",
                    f"an official Projected GAN network pickle (--cfg={_text(official['cfg'])}, "
                    f"sha256 {_code(official['sha256'][:16])}...)",
                )
            )
    lines = [
        f"# {_code(gen['name'])} generator, {res}",
        "",
        f"Exported with projected-gan {_text(config['library_version'])}. Load it with "
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
            f"{_fmt(metrics.get('num_images') or '?')} generated images (lower is better).",
            "",
            "| metric | value | feature space |",
            "| --- | --- | --- |",
            *(
                f"| {_text(k)} | {_fmt(v)} | {_text(metrics['feature_spaces'][k])} |"
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
        spec_text = yaml.safe_dump(training["spec"]).rstrip()
        fence = _fence(spec_text)  # a crafted spec cannot close the block
        lines += ["", "## Training spec", "", f"{fence}yaml", spec_text, fence]
    return "\n".join(lines) + "\n"
