"""Using a trained generator: load it from a checkpoint, draw fixed seeds, interpolate, animate,
and measure it (the one generation path of training metrics and ``projected-gan eval``)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from projected_gan.atomic import atomic_write_bytes
from projected_gan.checkpoint import (
    Checkpoint,
    CheckpointError,
    generator_config,
    resolve_checkpoint,
)
from projected_gan.errors import UsageError
from projected_gan.fitting import build_checked
from projected_gan.generators.sampling import interpolation_frames, latents_from_seeds
from projected_gan.images import (
    PNG_MODES,
    grid_image,
    image_file_suffix,
    save_array,
    save_image,
    save_image_grid,
    to_uint8,
)
from projected_gan.metrics import GeneratorFn, evaluate
from projected_gan.precision import resolve_precision

__all__ = [
    "evaluate_generator",
    "generate_images",
    "generator_config",
    "generator_from_checkpoint",
    "load_generator",
    "metric_generator",
    "resolve_checkpoint",
    "write_animation",
]


def generator_from_checkpoint(
    ckpt: Checkpoint, *, ema: bool = True, device: str | torch.device = "cpu"
) -> nn.Module:
    """The generator of a loaded checkpoint (G_ema by default), in eval mode on ``device``."""
    key = "G_ema" if ema else "G"
    if key not in ckpt.models:
        raise CheckpointError(f"{ckpt.path} has no {key} weights")
    where = f"{ckpt.path} [{key}]"
    G = build_checked(generator_config(ckpt), ckpt.models[key], where, error=CheckpointError)
    return G.eval().requires_grad_(False).to(device)


def load_generator(
    path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu"
) -> nn.Module:
    """The generator (G_ema by default) at ``path``, in eval mode on ``device``.

    ``path`` is any kind :func:`projected_gan.sources.identify` tells apart: a run folder (its
    newest checkpoint), a checkpoint file, an export folder (G_ema only), or a network pickle of
    the official Projected GAN code (read without running anything in it, see
    :mod:`projected_gan.official`). Needs no spec and does not import the trainer: checkpoints
    and exports record the generator's registered name and arguments.
    """
    from projected_gan import sources

    kind = sources.identify(path)
    if kind == sources.NETWORK_PICKLE:
        from projected_gan.official import generator_from_pickle

        return generator_from_pickle(path, model="G_ema" if ema else "G", device=device)
    if kind == sources.EXPORT:
        from projected_gan.export import load_exported_generator

        if not ema:
            raise UsageError(f"{path} is an export folder, which holds G_ema only; drop --no-ema")
        return load_exported_generator(path, device=device)
    return generator_from_checkpoint(resolve_checkpoint(path), ema=ema, device=device)


@torch.no_grad()
def generate_images(
    G: nn.Module,
    seeds: Sequence[int],
    *,
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    batch_size: int = 32,
) -> torch.Tensor:
    """uint8 images ``(len(seeds), C, H, W)``, seed ``s`` always giving the same picture."""
    device = next(G.parameters()).device
    z = latents_from_seeds(seeds, G.z_dim, device=device)
    c = None
    if getattr(G, "c_dim", 0):
        if class_idx is None:
            raise UsageError(
                f"this generator is conditional ({G.c_dim} classes): pass --class K",
                field="--class",
            )
        c = torch.full((len(seeds),), class_idx, dtype=torch.long, device=device)
    elif class_idx is not None:
        raise UsageError(
            "--class given, but this generator is unconditional",
            field="--class",
        )
    out = []
    for i in range(0, len(seeds), batch_size):
        ci = None if c is None else c[i : i + batch_size]
        out.append(to_uint8(G(z[i : i + batch_size], ci, truncation_psi=truncation_psi)).cpu())
    return torch.cat(out)


def write_images(
    images: torch.Tensor,
    seeds: Sequence[int],
    *,
    grid: str | Path | None = None,
    outdir: str | Path | None = None,
) -> list[Path]:
    """Save a grid PNG and/or one file per seed; returns the written paths (each atomically).

    ``images``: ``(N, C, H, W)`` uint8 (or float in [-1, 1]), one per seed. Per seed,
    ``seedNNNN.png`` with all channels for C = 1-4 (L, LA, RGB, RGBA), else ``seedNNNN.npy``, a
    ``(H, W, C)`` uint8 array. The grid shows gray or RGB images as they are, any other channel
    count as its RGB view (:func:`projected_gan.images.rgb_view`).
    """
    written = []
    if grid is not None:
        save_image_grid(images, grid)
        written.append(Path(grid))
    if outdir is not None:
        suffix = image_file_suffix(images.shape[1])
        save = save_image if images.shape[1] in PNG_MODES else save_array
        for seed, image in zip(seeds, images):
            path = Path(outdir) / f"seed{seed:04d}{suffix}"
            save(image, path)
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
    """Interpolate through the seeds' latents and write a GIF (Pillow) or MP4 (imageio) of
    ``H x W`` frames: gray or RGB as generated, any other channel count as its RGB view."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in {".gif", ".mp4"}:
        raise UsageError(
            f"output {out.name!r}: expected a .gif or .mp4 file name",
            field="out",
        )
    arrays = []  # (H, W, 1 or 3) uint8 each
    for batch in interpolation_frames(
        G,
        seeds,
        frames_per_pair,
        space=space,
        c=class_idx,
        truncation_psi=truncation_psi,
        loop=loop,
    ):
        arrays += [grid_image(img[None]) for img in to_uint8(batch).cpu()]
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
            raise UsageError(
                "writing .mp4 needs imageio with ffmpeg: pip install imageio imageio-ffmpeg "
                "(or write a .gif)",
                field="out",
            ) from None
        import numpy as np

        data = iio.imwrite("<bytes>", np.stack(arrays), extension=".mp4", fps=fps)
        atomic_write_bytes(out, data)
    return out


def metric_generator(
    G: nn.Module,
    *,
    device: torch.device,
    seed: int,
    precision: str = "auto",
    rank: int = 0,
    world_size: int = 1,
) -> GeneratorFn:
    """``fn(n, labels) -> (n, C, H, W)`` float32 in ~[-1, 1], as metrics draw fakes.

    Latents come from a generator of their own, seeded from ``seed`` (and the rank: each rank
    draws its own share), so the training random stream is untouched and a run's scores are
    reproducible. G runs under the run's ``precision`` (see :mod:`projected_gan.precision`), the
    same in training and in ``projected-gan eval``: one checkpoint, one score.
    """
    gen = torch.Generator(device=device).manual_seed((seed + 777) * world_size + rank)
    bf16 = resolve_precision(precision, device).autocast

    @torch.no_grad()
    def generate(n: int, labels: torch.Tensor | None) -> torch.Tensor:
        z = torch.randn(n, G.z_dim, device=device, generator=gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return G(z, labels).float()

    return generate


def evaluate_generator(
    G: nn.Module,
    dataset: Any,
    *,
    metrics: Sequence[str] = ("fd",),
    num_images: int,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
    precision: str = "auto",
    mirror: bool = False,
    feature_network: str | None = None,
    fid_weights: str | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, float]:
    """Metrics of ``num_images`` fakes of ``G`` against ``dataset``, drawn by
    :func:`metric_generator`; ``fd``/``kid`` in ``feature_network``'s space, ``fid`` with local
    Inception weights ``fid_weights``. Distributed (``world_size > 1``), call it on every rank.
    """
    names = [m for m in metrics if isinstance(m, str)]  # built Metric objects carry their own
    options: dict[str, Any] = {}
    if feature_network and "fd" in names:
        options["fd"] = {"feature_network": feature_network}
    if fid_weights:
        options["weights"] = fid_weights  # every metric in the Inception space
    generate = metric_generator(
        G, device=device, seed=seed, precision=precision, rank=rank, world_size=world_size
    )
    return evaluate(
        generate,
        dataset,
        metrics=list(metrics),
        num_images=num_images,
        batch_size=batch_size,
        device=device,
        seed=seed,
        mirror=mirror,
        distributed=world_size > 1,
        **options,
    )
