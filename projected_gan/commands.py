"""What the CLI commands do, as plain functions (the CLI only parses arguments)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from projected_gan import distributed
from projected_gan.training.spec import ExperimentSpec

__all__ = ["evaluate_checkpoint", "export", "generate", "interpolate", "train"]


def train(
    spec_file: str | None = None,
    *,
    preset: str | None = None,
    data: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    resume: str | None = None,
    device: str | None = None,
    dry_run: bool = False,
    progress: bool = True,
) -> Path | None:
    """Train from a spec file / preset (+ overrides), or resume a run folder; return the run dir."""
    from projected_gan.training.build import build_from_spec
    from projected_gan.training.loop import Trainer

    info = distributed.dist_info()  # from torchrun's environment
    try:
        if resume is not None:
            if spec_file or preset or data:
                raise ValueError(
                    "--resume takes the spec from the run folder; drop SPEC/--preset/--data"
                )
            trainer = Trainer.resume(resume, overrides=overrides, device=device)
            if trainer.is_main:
                print(
                    f"resuming {trainer.run_dir} at kimg {trainer.nimg / 1000:.3f}",
                    file=sys.stderr,
                )
        else:
            spec = ExperimentSpec.load(spec_file, preset=preset, overrides=overrides, data=data)
            if dry_run:
                print(spec.to_yaml())
                return None
            trainer = build_from_spec(spec, device=device)
        run_dir = trainer.fit(progress=progress)
    except BaseException as exc:
        # No orderly shutdown here: the other ranks may be waiting in a collective. This rank
        # exits non-zero, torchrun stops the others; the message says which rank failed.
        if info.enabled:
            print(
                f"projected-gan train: rank {info.rank} of {info.world_size} failed: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
                flush=True,
            )
        raise
    distributed.shutdown()
    if trainer.is_main:
        print(f"run folder: {run_dir}")
    return run_dir


def _device(name: str | None) -> Any:
    from projected_gan.training.build import resolve_device

    return resolve_device(name or "auto")


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
        raise ValueError("say where the images go: --grid OUT.png and/or --outdir DIR")
    seed_list = parse_seeds(seeds)
    G, _ = load_generator(checkpoint, ema=ema, device=_device(device))
    images = generate_images(G, seed_list, class_idx=class_idx, truncation_psi=truncation_psi)
    written = write_images(images, seed_list, grid=grid, outdir=outdir)
    print(f"wrote {len(seed_list)} image(s): " + ", ".join(str(p) for p in written[:3]))
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

    G, _ = load_generator(checkpoint, device=_device(device))
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


def evaluate_checkpoint(
    checkpoint: str,
    *,
    data: str | None = None,
    metrics: str = "fd,kid",
    num: int = 10_000,
    batch: int = 64,
    feature_network: str | None = None,
    inception_weights: str | None = None,
    json_out: str | None = None,
    device: str | None = None,
) -> dict[str, float]:
    """Metrics of a checkpoint's G_ema against a dataset (default: the run's own data)."""
    import torch

    from projected_gan.inference import load_generator
    from projected_gan.metrics import evaluate
    from projected_gan.training.build import load_dataset

    dev = _device(device)
    G, spec = load_generator(checkpoint, device=dev)
    if spec is None:  # an export folder made from a module, without a training spec (#21)
        raise ValueError(f"{checkpoint} records no training spec: evaluate its run folder instead")
    if data is not None:
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"path": data})})
    dataset = load_dataset(spec)
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    options: dict[str, Any] = {}
    if any(n in ("fd", "kid") for n in names):
        options["feature_network"] = feature_network or spec.metrics.feature_network
    weights = inception_weights or spec.metrics.fid_weights
    if "fid" in names and weights:
        options["fid"] = {"weights": weights}

    def generate_batch(n, labels):
        z = torch.randn(n, G.z_dim, device=dev)
        return G(z, labels)

    torch.manual_seed(spec.train.seed)
    results = evaluate(
        generate_batch,
        dataset,
        metrics=names,
        num_images=num,
        batch_size=batch,
        device=dev,
        mirror=spec.data.mirror,
        **options,
    )
    width = max(len(k) for k in results)
    print(f"{'metric':<{width}}  value")
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.6g}")
    if json_out:
        from projected_gan.atomic import atomic_write_text

        record = {
            "checkpoint": str(checkpoint),
            "data": dataset.source,
            "num_images": num,
            **results,
        }
        atomic_write_text(Path(json_out), json.dumps(record, indent=2) + "\n")
    return results


# --- export (#21) ---
def export(
    checkpoint: str, out_dir: str, *, format: str = "safetensors", truncation_psi: float = 1.0
) -> Path:
    """Export a checkpoint's G_ema to ``out_dir``; prints the files, sizes and the check result."""
    from projected_gan.export import export_checkpoint

    result = export_checkpoint(checkpoint, out_dir, format=format, truncation_psi=truncation_psi)
    for path in result.files:
        print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)")
    print(
        f"{format} export checked against PyTorch: max abs diff {result.max_abs_diff:.3g} "
        f"(total {result.size_bytes / 2**20:.2f} MiB)"
    )
    return result.folder


# --- end export ---
