"""``projected-gan generate`` and ``interpolate``: images and animations from a generator."""

from __future__ import annotations

from pathlib import Path

from projected_gan.devices import resolve_device
from projected_gan.errors import UsageError

__all__ = ["generate", "interpolate"]


def generate(
    checkpoint: str,
    seeds: str,
    *,
    grid: str | None = None,
    outdir: str | None = None,
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    ema: bool = True,
    device: str | None = None,
) -> list[Path]:
    """Images for ``seeds`` ("0-7,12") from a checkpoint or run folder, as a grid and/or files."""
    from projected_gan.generators.sampling import parse_seeds
    from projected_gan.inference import generate_images, load_generator, write_images

    if grid is None and outdir is None:
        raise UsageError(
            "say where the images go: --grid OUT.png and/or --outdir DIR", field="--grid"
        )
    seed_list = parse_seeds(seeds)
    G = load_generator(checkpoint, ema=ema, device=resolve_device(device))
    images = generate_images(G, seed_list, class_idx=class_idx, truncation_psi=truncation_psi)
    written = write_images(images, seed_list, grid=grid, outdir=outdir)
    shown = ", ".join(str(p) for p in written[:3])
    more = f", ... (+{len(written) - 3} more)" if len(written) > 3 else ""
    print(f"wrote {len(written)} file(s): {shown}{more}")
    return written


def interpolate(
    checkpoint: str,
    seeds: str,
    out: str,
    *,
    frames: int = 60,
    space: str = "w",
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    fps: int = 30,
    device: str | None = None,
) -> Path:
    """A looping animation through the seeds' latents (GIF, or MP4 with imageio)."""
    from projected_gan.generators.sampling import parse_seeds
    from projected_gan.inference import load_generator, write_animation

    G = load_generator(checkpoint, device=resolve_device(device))
    path = write_animation(
        G,
        parse_seeds(seeds),
        out,
        frames_per_pair=frames,
        space=space,
        class_idx=class_idx,
        truncation_psi=truncation_psi,
        fps=fps,
    )
    print(f"wrote {path}")
    return path
