"""How should the frozen feature network see a non-square image? Keep, stretch or pad.

    OMP_NUM_THREADS=1 nice python benchmarks/aspect_view.py --per-class 150 --json aspect.json

Photos of the 5 flower classes (``--data``, one folder per class) are cropped with PIL to
64x96 (landscape, height x width) and to 96x64 (portrait), and the default feature network
(``tf_efficientnet_lite0``, pretrained) sees each one under four views, all ending with the
short side at the network's ``input_size`` (224) except the last:

* ``keep``: scaled so the short side is 224, aspect kept (64x96 -> 224x336);
* ``stretch``: resized to 224x224 (the aspect is lost);
* ``pad``: padded to a square with zeros (mid-grey in [-1, 1]), then resized to 224x224;
* ``native``: the 64x96 image itself (the ``"never"`` resize rule), for reference.

Per view it reports (i) a 5-class accuracy on the globally average-pooled features of the 4
maps (concatenated, standardised on the training half): nearest class mean and a linear probe
(multinomial logistic regression, L2, LBFGS), mean and sample std over ``--splits`` random
stratified 50/50 train/test splits; (ii) the seconds per batch of 64 images (resize included,
fp32, median of ``--repeats`` timed batches after one warm-up, the views taking turns); (iii)
the 4 maps' sizes. Accuracies of the other views are also given as paired differences to
``keep`` (same split, same probe), mean and std over the splits.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

DEFAULT_DATA = Path("/work/shared/data/flowers")
VIEWS = ("keep", "stretch", "pad", "native")
SHAPES = {"landscape": (64, 96), "portrait": (96, 64)}  # (height, width)
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="one folder per class")
    p.add_argument("--per-class", type=int, default=150, help="photos per class")
    p.add_argument("--splits", type=int, default=5, help="random train/test splits")
    p.add_argument("--repeats", type=int, default=3, help="timed batches of 64 per view")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    for flag in ("per_class", "splits", "repeats", "batch"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    if not args.data.is_dir():
        p.error(f"--data: {args.data} is not a folder")
    return args


def load_photos(root: Path, per_class: int, size: tuple[int, int]) -> tuple[torch.Tensor, list]:
    """The first ``per_class`` photos (sorted by name) of each class folder, cropped to ``size``
    (height, width) as ``(N, 3, H, W)`` float in [-1, 1], and their class indices."""
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    images, labels = [], []
    for index, folder in enumerate(classes):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in SUFFIXES)[:per_class]
        for f in files:
            with Image.open(f) as im:
                # scale to cover, centre crop: the data loader's default fit ("crop")
                fitted = ImageOps.fit(im.convert("RGB"), (size[1], size[0]), Image.LANCZOS)
            images.append(torch.from_numpy(np.asarray(fitted).copy()).permute(2, 0, 1))
            labels.append(index)
    x = torch.stack(images).float() / 127.5 - 1
    return x, labels


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def view(x: torch.Tensor, kind: str, side: int = 224) -> torch.Tensor:
    """The image the network is given under view ``kind`` (the network resizes nothing more)."""
    h, w = x.shape[-2:]
    if kind == "native":
        return x
    if kind == "stretch":
        return _resize(x, (side, side))
    if kind == "pad":
        s = max(h, w)
        top, left = (s - h) // 2, (s - w) // 2
        return _resize(F.pad(x, (left, s - w - left, top, s - h - top), value=0.0), (side, side))
    scale = side / min(h, w)  # keep
    return _resize(x, (round(h * scale), round(w * scale)))


def pooled_features(net, x: torch.Tensor, kind: str, batch: int) -> tuple[torch.Tensor, list]:
    """Concatenated global average pools of the 4 maps, ``(N, sum(channels))``, and map sizes."""
    out, sizes = [], []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            maps = net(view(x[i : i + batch], kind))
            sizes = [tuple(m.shape[-2:]) for m in maps]
            out.append(torch.cat([m.mean((2, 3)) for m in maps], 1))
    return torch.cat(out), sizes


def time_views(nets: dict, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per batch ``x`` for each view: view (resize) + feature network, fp32.

    The views take turns (one warm-up round, then ``repeats`` rounds), so a change in the
    machine's load falls on all of them alike.
    """
    times: dict[str, list[float]] = {kind: [] for kind in nets}
    with torch.inference_mode():
        for i in range(repeats + 1):
            for kind, net in nets.items():
                t0 = time.perf_counter()
                net(view(x, kind))
                if i:
                    times[kind].append(time.perf_counter() - t0)
    return {kind: statistics.median(t) for kind, t in times.items()}


def split(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified 50/50 train/test split of the sample indices."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        train.append(idx[: len(idx) // 2])
        test.append(idx[len(idx) // 2 :])
    return torch.cat(train), torch.cat(test)


def probe_accuracy(feats: torch.Tensor, labels: torch.Tensor, seed: int) -> tuple[float, float]:
    """(nearest class mean, linear probe) test accuracy on one split."""
    train, test = split(labels, seed)
    mu, sd = feats[train].mean(0), feats[train].std(0).clamp_min(1e-6)
    z = (feats - mu) / sd
    classes = int(labels.max()) + 1
    means = torch.stack([z[train][labels[train] == c].mean(0) for c in range(classes)])
    ncm = (torch.cdist(z[test], means).argmin(1) == labels[test]).float().mean().item()

    torch.manual_seed(seed)
    linear = torch.nn.Linear(z.shape[1], classes)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(z[train]), labels[train])
        loss = loss + 1e-3 * linear.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        lin = (linear(z[test]).argmax(1) == labels[test]).float().mean().item()
    return ncm, lin


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), _std(values)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import projected_gan

    net = projected_gan.create("feature_networks", "tf_efficientnet_lite0", pretrained=True)
    # the views are made here; the network itself must resize nothing (its own rule would)
    native = projected_gan.create(
        "feature_networks", "tf_efficientnet_lite0", resize="never", input_size=None
    )
    nets = {kind: native if kind == "native" else net for kind in VIEWS}
    rows = []
    for shape, size in SHAPES.items():
        x, labels = load_photos(args.data, args.per_class, size)
        labels = torch.tensor(labels)
        print(f"{shape} {size[0]}x{size[1]}: {len(x)} photos", flush=True)
        seconds = time_views(nets, x[: args.batch], args.repeats)
        base = None
        for kind, network in nets.items():
            feats, sizes = pooled_features(network, x, kind, args.batch)
            accs = [probe_accuracy(feats, labels, seed) for seed in range(args.splits)]
            ncm, lin = ([a[i] for a in accs] for i in (0, 1))
            base = base or (ncm, lin)  # the first view, "keep": paired differences to it
            seen = tuple(view(x[:1], kind).shape[-2:])
            row = {
                "shape": shape,
                "view": kind,
                "seen": seen,
                "map_sizes": sizes,
                "ncm": ncm,
                "linear": lin,
                "ncm_mean": statistics.mean(ncm),
                "ncm_std": _std(ncm),
                "linear_mean": statistics.mean(lin),
                "linear_std": _std(lin),
                "ncm_minus_keep": _mean_std([a - b for a, b in zip(ncm, base[0])]),
                "linear_minus_keep": _mean_std([a - b for a, b in zip(lin, base[1])]),
                "s_per_batch": seconds[kind],
            }
            rows.append(row)
            print(
                f"  {kind:8s} seen {seen[0]}x{seen[1]:<4d} maps "
                f"{' '.join(f'{h}x{w}' for h, w in sizes):24s} "
                f"NCM {100 * row['ncm_mean']:.1f} +- {100 * row['ncm_std']:.1f} "
                f"(vs keep {100 * row['ncm_minus_keep'][0]:+.1f} +- "
                f"{100 * row['ncm_minus_keep'][1]:.1f})  "
                f"linear {100 * row['linear_mean']:.1f} +- {100 * row['linear_std']:.1f} "
                f"(vs keep {100 * row['linear_minus_keep'][0]:+.1f} +- "
                f"{100 * row['linear_minus_keep'][1]:.1f})  "
                f"{seconds[kind]:.2f} s/batch",
                flush=True,
            )
    result = {
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
