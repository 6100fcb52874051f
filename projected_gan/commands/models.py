"""``projected-gan export`` and ``convert``: a generator as a self-describing folder."""

from __future__ import annotations

from pathlib import Path

__all__ = ["convert", "export"]


def export(
    checkpoint: str, out_dir: str, *, format: str = "safetensors", truncation_psi: float = 1.0
) -> Path:
    """Export a checkpoint's G_ema to ``out_dir``; prints the files, sizes and the check result.

    ``checkpoint`` may also be an official network pickle (see :func:`convert`)."""
    from projected_gan.export import export_checkpoint
    from projected_gan.official import convert_network_pickle, is_network_pickle

    if is_network_pickle(checkpoint):
        result = convert_network_pickle(
            checkpoint, out_dir, format=format, truncation_psi=truncation_psi
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
    from projected_gan.official import convert_network_pickle, read_network_pickle

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
