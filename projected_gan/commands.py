"""What the CLI commands do, as plain functions (the CLI only parses arguments)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from projected_gan import distributed
from projected_gan.atomic import atomic_write_json
from projected_gan.devices import resolve_device
from projected_gan.errors import UsageError
from projected_gan.training.spec import ExperimentSpec

__all__ = [
    "convert",
    "evaluate_checkpoint",
    "evaluate_image_folders",
    "export",
    "generate",
    "interpolate",
    "prepare_data",
    "train",
]


def train(
    spec_file: str | None = None,
    *,
    preset: str | None = None,
    data: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    resume: str | None = None,
    init: str | None = None,
    init_partial: bool = False,
    device: str | None = None,
    dry_run: bool = False,
    progress: bool = True,
) -> Path | None:
    """Train from a spec file / preset (+ overrides), or resume a run folder; return the run dir.

    ``init`` (``--init SOURCE``) starts the new run from trained weights (``train.init.source``;
    ``init_partial`` sets ``train.init.partial``): see :func:`projected_gan.training.init_from`.
    """
    from projected_gan.training.build import build_from_spec
    from projected_gan.training.trainer import Trainer

    info = distributed.dist_info()  # from torchrun's environment
    try:
        if resume is not None:
            if spec_file or preset or data:
                raise UsageError(
                    "--resume takes the spec from the run folder; drop SPEC/--preset/--data",
                    field="--resume",
                )
            if init or init_partial:
                raise UsageError(
                    "--init starts a new run from trained weights; --resume continues a run "
                    "with its own: use one of them",
                    field="--init",
                )
            trainer = Trainer.resume(resume, overrides=overrides, device=device)
            if trainer.is_main:
                print(
                    f"resuming {trainer.run_dir} at kimg {trainer.nimg / 1000:.3f}",
                    file=sys.stderr,
                )
        else:
            if init is not None:  # JSON-quoted: the path stays a string whatever it looks like
                overrides = [*overrides, f"train.init.source={json.dumps(init)}"]
            if init_partial:
                overrides = [*overrides, "train.init.partial=true"]
            spec = ExperimentSpec.load(spec_file, preset=preset, overrides=overrides, data=data)
            if dry_run:
                from projected_gan.training.assemble import check_parts
                from projected_gan.training.init_weights import read_spec_source

                check_parts(spec)  # what a real run would refuse before reading data
                read_spec_source(spec)  # and a SOURCE it could not read
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


def _metric_options(
    feature_network: str | None, inception_weights: str | None, fd_default: str | None = None
) -> dict[str, Any]:
    """``--feature-network`` moves fd, kid and pr; ``--inception-weights`` feeds every metric in
    the Inception space."""
    options: dict[str, Any] = {}
    if feature_network:
        options["feature_network"] = feature_network
    elif fd_default:
        options["fd"] = {"feature_network": fd_default}
    if inception_weights:
        options["weights"] = inception_weights
    return options


def _comparability(key: str, space: str) -> str:
    if space != "inception":
        return "for this library's runs only"
    if key in ("precision", "recall"):
        return "the paper measures in VGG-16 space"
    return "comparable with papers"


def _print_results(results: dict[str, float], metrics: list[Any]) -> dict[str, str]:
    """A table of the results, each with its feature space (KID x 10^3, as papers print it);
    returns ``{result: space}``."""
    spaces = {key: getattr(m, "space", "?") for m in metrics for key in m.results}
    rows = []
    for key, value in results.items():
        scaled = key in ("kid", "kid_std")
        space = spaces.get(key, "?")
        rows.append(
            (
                f"{key} x10^3" if scaled else key,
                f"{value * 1e3 if scaled else value:.6g}",
                f"{space} ({_comparability(key, space)})",
            )
        )
    width, digits = (max(len(r[i]) for r in rows) for i in (0, 1))
    print(f"{'metric':<{width}}  {'value':>{digits}}  space")
    for label, value, space in rows:
        print(f"{label:<{width}}  {value:>{digits}}  {space}")
    return spaces


def evaluate_checkpoint(
    checkpoint: str,
    *,
    data: str | None = None,
    metrics: str | None = None,
    num: int = 10_000,
    batch: int | None = None,
    feature_network: str | None = None,
    inception_weights: str | None = None,
    precision: str | None = None,
    json_out: str | None = None,
    device: str | None = None,
) -> dict[str, float]:
    """Metrics of a checkpoint's G_ema against a dataset (default: the run's own data and its
    ``metrics.names``, else ``fd``).

    Fakes are drawn as in training (same latents, the run's precision, memory layout and metric
    batch), so ``--num`` equal to the run's ``metrics.num_images`` reproduces its logged scores.
    """
    import torch

    from projected_gan.inference import (
        evaluate_generator,
        generator_from_checkpoint,
        resolve_checkpoint,
    )
    from projected_gan.metrics import build_metrics
    from projected_gan.official import is_network_pickle
    from projected_gan.training.assemble import metric_batch
    from projected_gan.training.build import load_dataset

    if num < 2:
        raise UsageError(f"--num must be at least 2, got {num}", field="--num")
    dev = resolve_device(device)
    if is_network_pickle(checkpoint):
        G, spec, meta = _network_pickle_for_eval(checkpoint, data, dev)
    else:
        ckpt = resolve_checkpoint(checkpoint)
        G = generator_from_checkpoint(ckpt, device=dev)
        spec = ExperimentSpec.validate_dict(ckpt.meta.get("spec", {}), source=str(ckpt.path))
        meta = ckpt.meta
    if spec.train.channels_last:  # as in training: the layout changes bf16/fp32 rounding too
        G = G.to(memory_format=torch.channels_last)
    spec = spec.model_copy(update={"data": _eval_data(spec, meta, data, G)})
    dataset = load_dataset(spec)
    weights = inception_weights or spec.metrics.fid_weights
    options = _metric_options(feature_network, weights, spec.metrics.feature_network)
    built = build_metrics(metrics or spec.metrics.names or ["fd"], **options)
    results = evaluate_generator(
        G,
        dataset,
        metrics=built,
        num_images=num,
        batch_size=batch or metric_batch(spec),
        device=dev,
        seed=spec.train.seed,
        precision=precision or spec.train.precision,
        mirror=spec.data.mirror,
    )
    spaces = _print_results(results, built)
    if json_out:
        record = {"checkpoint": str(checkpoint), "data": dataset.source, "num_images": num}
        atomic_write_json(json_out, {**record, **results, "spaces": spaces})
    return results


def evaluate_image_folders(
    real: str | None,
    fake: str | None,
    *,
    metrics: str = "fid",
    resolution: int | None = None,
    batch: int = 64,
    feature_network: str | None = None,
    inception_weights: str | None = None,
    json_out: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Metrics of the images in ``fake`` against those in ``real`` (folders or zips)."""
    from projected_gan.metrics import build_metrics, evaluate_folders, folder_resolution

    if not real or not fake:
        raise UsageError("give both --real DIR_OR_ZIP and --fake DIR_OR_ZIP", field="--real")
    resolution = resolution or folder_resolution(fake)
    built = build_metrics(metrics, **_metric_options(feature_network, inception_weights))
    print(f"reading both sets at {resolution}x{resolution}", file=sys.stderr)
    results = evaluate_folders(
        real,
        fake,
        built,
        resolution=resolution,
        batch_size=batch,
        device=resolve_device(device),
        progress=progress,
    )
    spaces = _print_results(results, built)
    if json_out:
        record = {"real": str(real), "fake": str(fake), "resolution": resolution}
        atomic_write_json(json_out, {**record, **results, "spaces": spaces})
    return results


def _network_pickle_for_eval(
    path: str, data: str | None, device: Any
) -> tuple[Any, ExperimentSpec, dict[str, Any]]:
    """G_ema of an official network pickle, and the default spec to evaluate it with: a
    pickle records no spec, so the metrics, seed, precision and batch are this library's
    defaults, and the real images must be given."""
    from projected_gan.official import generator_from_pickle, read_network_pickle

    nets = read_network_pickle(path)
    if data is None:
        recorded = (nets.info.get("training_set_kwargs") or {}).get("path")
        raise UsageError(
            f"--data: {Path(path).name} is an official network pickle, which holds no data this "
            f"library can read (its run used {recorded!r}); pass the real images",
            field="--data",
        )
    G = generator_from_pickle(nets, device=device)
    spec = ExperimentSpec.validate_dict(
        {"data": {"conditional": G.c_dim > 0}}, source=f"defaults for {Path(path).name}"
    )
    return G, spec, {}


def _eval_data(spec: ExperimentSpec, meta: dict[str, Any], path: str | None, G: Any) -> Any:
    """The data section to evaluate against: the run's own data (a hand-built run's recorded
    data), or ``path`` at the generator's resolution."""
    d = spec.data
    recorded = meta.get("data")
    if not meta.get("built_from_spec", True):
        if recorded:
            d = d.model_copy(
                update={
                    "path": recorded["path"],
                    "conditional": recorded["use_labels"],
                    "max_images": recorded["max_images"],
                    "mirror": recorded["mirror"],
                }
            )
        elif path is None:
            raise UsageError(
                "--data: this checkpoint comes from a hand-built run that recorded no data; "
                "say which images to compare with",
                field="--data",
            )
    update: dict[str, Any] = {"resolution": int(getattr(G, "img_resolution", d.resolution))}
    if path is not None:
        update["path"] = path
    return d.model_copy(update=update)


# --- export (#21) ---
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


# --- end export ---


# --- data (#25) ---
def prepare_data(
    path: str,
    *,
    resolution: int,
    conditional: bool = False,
    channels: int = 3,
    max_images: int | None = None,
    cache_dir: str | None = None,
    workers: int | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Build (or find) the decoded cache of ``path`` that training with the same settings maps,
    with a progress bar, and print a summary: images, classes with counts, skipped files, the
    cache file and its size. Returns the summary as a dict."""
    import time

    from projected_gan.data import load_image_dataset

    if resolution < 1:
        raise UsageError(f"--resolution must be a positive integer, got {resolution}")
    start = time.perf_counter()
    dataset = load_image_dataset(
        path,
        resolution,
        use_labels=conditional,
        channels=channels,
        cache_dir=cache_dir,
        storage="cache",
        strict=strict,
        max_images=max_images,
        workers=workers,
        progress=True,
    )
    seconds = time.perf_counter() - start
    if dataset.cache_file is None:
        raise UsageError(
            f"could not write the dataset cache of {path} (see the warning above); give a "
            "writable --cache-dir",
            field="--cache-dir",
        )
    raw = Path(dataset.cache_file)
    size = raw.stat().st_size + raw.with_suffix(".json").stat().st_size
    counts = {}
    if dataset.labels is not None:
        per_class = dataset.labels.bincount(minlength=dataset.num_classes).tolist()
        counts = dict(zip(dataset.class_names, per_class))
    summary = {
        "path": dataset.source,
        "images": len(dataset),
        "resolution": resolution,
        "channels": channels,
        "classes": counts,
        "labels_from": dataset.labels_from,
        "skipped": list(dataset.skipped),
        "upscaled": dataset.upscaled,
        "cache_file": str(raw),
        "cache_bytes": size,
        "seconds": round(seconds, 2),
        "built": dataset.cache_built,
    }
    shown = ", ".join(f"{name}: {n:,}" for name, n in list(counts.items())[:20])
    more = f", ... ({len(counts) - 20} more)" if len(counts) > 20 else ""
    skipped = ", ".join(dataset.skipped[:5]) + (" ..." if len(dataset.skipped) > 5 else "")
    print(f"data      {dataset.source}")
    print(f"images    {len(dataset):,} at {resolution}x{resolution}, {channels} channel(s)")
    if conditional:
        print(f"classes   {len(counts)} (from {dataset.labels_from}): {shown}{more}")
    print(f"skipped   {len(dataset.skipped)} unreadable file(s){': ' + skipped if skipped else ''}")
    if dataset.upscaled:
        print(f"upscaled  {dataset.upscaled} image(s) smaller than {resolution}px")
    how = f"built in {seconds:.1f} s" if dataset.cache_built else "already built"
    print(f"cache     {raw} ({_size(size)}; {how})")
    return summary


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes / 1e3:.1f} kB"


# --- end data ---


# --- convert (#26: official network pickles) ---
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


# --- end convert ---
