"""``projected-gan export`` and ``convert``: a generator as a self-describing folder."""

from __future__ import annotations

from pathlib import Path

__all__ = ["convert", "export"]


def export(
    checkpoint: str, out_dir: str, *, format: str = "safetensors", truncation_psi: float = 1.0
) -> Path:
    """Export the G_ema at ``checkpoint`` to ``out_dir``; prints the files, sizes and the check.

    ``checkpoint`` is any kind :func:`projected_gan.sources.identify` tells apart: a run folder,
    a checkpoint, an export folder (re-exported, e.g. to ONNX) or an official network pickle
    (see :func:`convert`)."""
    from projected_gan import sources
    from projected_gan.export import export_checkpoint, export_generator, read_export_config
    from projected_gan.inference import load_generator
    from projected_gan.official import convert_network_pickle

    kind = sources.identify(checkpoint, field="CHECKPOINT")
    if kind == sources.NETWORK_PICKLE:
        result = convert_network_pickle(
            checkpoint, out_dir, format=format, truncation_psi=truncation_psi
        )
    elif kind == sources.EXPORT:
        config = read_export_config(checkpoint)
        result = export_generator(
            load_generator(checkpoint),
            out_dir,
            format=format,
            truncation_psi=truncation_psi,
            config=config["generator"],
            training=config.get("training"),
        )
    else:
        result = export_checkpoint(
            checkpoint, out_dir, format=format, truncation_psi=truncation_psi
        )
    for path in result.files:
        print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)")
    print(
        f"{format} export checked against PyTorch: max abs diff {result.max_abs_diff:.3g} "
        f"(total {result.size_bytes / 2**20:.2f} MiB)"
    )
    return result.folder


def convert(pickle_path: str, out_dir: str, *, model: str = "G_ema") -> Path:
    """An official Projected GAN network pickle as an export folder (safetensors + config.json,
    model card, samples), read without running anything in the pickle; prints what was read."""
    from projected_gan import sources
    from projected_gan.official import convert_network_pickle, read_network_pickle

    sources.require(pickle_path, (sources.NETWORK_PICKLE,), "convert", field="PICKLE")
    nets = read_network_pickle(pickle_path)
    info = nets.info
    kimg = f", {info['kimg']:g} kimg" if "kimg" in info else ""
    print(
        f"read {nets.path.name} (sha256 {nets.sha256[:16]}...): official --cfg={info['cfg']}, "
        f"{info['resolution']} px, {info['c_dim']} classes{kimg}; nothing in it was run"
    )
    for key, record in info["models"].items():
        left = record["left_at_init"]
        note = f", {len(left)} of ours left at initialisation" if left else ""
        print(f"  {key}: {record['tensors']} tensors mapped{note}")
    result = convert_network_pickle(nets, out_dir, model=model)
    for path in result.files:
        print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)")
    print(
        f"reloaded and checked against the converted {model}: "
        f"max abs diff {result.max_abs_diff:.3g}"
    )
    return result.folder
