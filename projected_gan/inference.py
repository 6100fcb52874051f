"""Using a trained generator: load it from a checkpoint, draw fixed seeds, interpolate, animate."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from projected_gan.atomic import atomic_write_bytes
from projected_gan.checkpoint import CheckpointError, load_module_state, resolve_checkpoint
from projected_gan.generators.sampling import interpolation_frames, latents_from_seeds
from projected_gan.images import make_grid, save_image, save_image_grid, to_uint8
from projected_gan.training.build import build_generator
from projected_gan.training.spec import ExperimentSpec, SpecError

__all__ = ["generate_images", "load_generator", "resolve_checkpoint", "write_animation"]


def load_generator(
    path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ExperimentSpec | None]:
    """Rebuild the generator of a run (G_ema by default) in eval mode on ``device``.

    ``path``: a checkpoint file, a run folder (its newest usable checkpoint), or an export
    folder from ``projected-gan export`` (then the spec is the one recorded there, or None).
    """
    # --- export folders (#21) ---
    from projected_gan.export import is_export_dir, load_exported_generator, read_export_config

    if is_export_dir(path):
        if not ema:
            raise ValueError(f"{path} is an export folder, which holds G_ema only; drop --no-ema")
        G = load_exported_generator(path, device=device)
        saved = (read_export_config(path).get("training") or {}).get("spec")
        try:
            spec = None if saved is None else ExperimentSpec.validate_dict(saved, source=str(path))
        except SpecError as exc:  # the generator does not need it; say why it is missing
            warnings.warn(
                f"{path}: the recorded training spec is not valid here: {exc}", stacklevel=2
            )
            spec = None
        return G, spec
    # --- end export folders ---
    ckpt = resolve_checkpoint(path)
    spec = ExperimentSpec.validate_dict(ckpt.meta.get("spec", {}), source=str(ckpt.path))
    G = build_generator(spec, int(ckpt.meta.get("num_classes", 0)))
    key = "G_ema" if ema else "G"
    if key not in ckpt.models:
        raise CheckpointError(f"{ckpt.path} has no {key} weights")
    load_module_state(G, ckpt.models[key], f"{ckpt.path} [{key}]")
    return G.eval().requires_grad_(False).to(device), spec


@torch.no_grad()
def generate_images(
    G: nn.Module,
    seeds: Sequence[int],
    *,
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    batch_size: int = 32,
) -> torch.Tensor:
    """uint8 images ``(len(seeds), C, R, R)``, seed ``s`` always giving the same picture."""
    device = next(G.parameters()).device
    z = latents_from_seeds(seeds, G.z_dim, device=device)
    c = None
    if getattr(G, "c_dim", 0):
        if class_idx is None:
            raise ValueError(f"this generator is conditional ({G.c_dim} classes): pass --class K")
        c = torch.full((len(seeds),), class_idx, dtype=torch.long, device=device)
    elif class_idx is not None:
        raise ValueError("--class given, but this generator is unconditional")
    out = []
    for i in range(0, len(seeds), batch_size):
        ci = None if c is None else c[i : i + batch_size]
        out.append(to_uint8(G(z[i : i + batch_size], ci, truncation_psi=truncation_psi)))
    return torch.cat(out)


def write_images(
    images: torch.Tensor,
    seeds: Sequence[int],
    *,
    grid: str | Path | None = None,
    outdir: str | Path | None = None,
) -> list[Path]:
    """Save a grid PNG and/or one ``seedNNNN.png`` per seed; returns the written paths."""
    written = []
    if grid is not None:
        save_image_grid(images, grid)
        written.append(Path(grid))
    if outdir is not None:
        for seed, image in zip(seeds, images):
            path = Path(outdir) / f"seed{seed:04d}.png"
            save_image(image, path)
            written.append(path)
    return written


@torch.no_grad()
def write_animation(
    G: nn.Module,
    seeds: Sequence[int],
    out: str | Path,
    *,
    frames_per_pair: int = 60,
    space: str = "w",
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    loop: bool = True,
    fps: int = 30,
) -> Path:
    """Interpolate through the seeds' latents and write a GIF (Pillow) or MP4 (imageio)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in {".gif", ".mp4"}:
        raise ValueError(f"output {out.name!r}: expected a .gif or .mp4 file name")
    frames = []
    for batch in interpolation_frames(
        G,
        seeds,
        frames_per_pair,
        space=space,
        c=class_idx,
        truncation_psi=truncation_psi,
        loop=loop,
    ):
        frames += [make_grid(img[None]) for img in to_uint8(batch)]
    arrays = [f.permute(1, 2, 0).numpy() for f in frames]
    if suffix == ".gif":
        from PIL import Image

        pils = [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]
        buf = io.BytesIO()
        duration = max(int(1000 / fps), 20)
        pils[0].save(
            buf, format="GIF", save_all=True, append_images=pils[1:], duration=duration, loop=0
        )
        atomic_write_bytes(out, buf.getvalue())
    else:
        try:
            import imageio.v3 as iio
        except ImportError:
            raise ValueError(
                "writing .mp4 needs imageio with ffmpeg: pip install imageio imageio-ffmpeg "
                "(or write a .gif)"
            ) from None
        import numpy as np

        data = iio.imwrite("<bytes>", np.stack(arrays), extension=".mp4", fps=fps)
        atomic_write_bytes(out, data)
    return out
