"""How far the resize-to-299 convention moves FID: two random halves of one real image set.

    python benchmarks/fid_resize.py --data /path/to/flowers --num 250 --resolutions 128,256 \
        --splits 5 --json fid_resize.json

The images are read by the data loader at each resolution R (centre crop + LANCZOS), a random
``2 * num`` of them are embedded once per convention, and FID is computed between the two
halves of ``--splits`` random splits. Conventions (all feed the same Inception-v3 2015-12-05
weights; only the way to 299 x 299 differs):

- ``tf1_bilinear``: ours = the original TF FID, torch-fidelity, NVIDIA StyleGAN2/3 metric code
  (TF-1.x bilinear, source pixel ``dst * in / out``, no antialiasing);
- ``torch_bilinear``: pytorch-fid (``F.interpolate(bilinear, align_corners=False)``: half-pixel
  centres, no antialiasing);
- ``pil_bicubic``: clean-fid's "clean" mode (PIL bicubic with antialiasing, per channel in
  float32, clipped to [0, 255]);
- ``loader_299``: what ``--resolution 299`` gives: the loader's LANCZOS straight from the photos
  to 299 (independent of R, so computed once).

Printed: per R and convention, FID mean +- std over the splits and the paired difference to
``tf1_bilinear`` (same split) mean +- std. The difference is the number that matters: it shows
whether a convention moves FID by more than the split-to-split noise.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from projected_gan.data import load_image_dataset
from projected_gan.metrics import FeatureStats, InceptionFeatures, frechet_distance
from projected_gan.metrics.inception import INCEPTION_SIZE, resize_tf1_bilinear


def torch_bilinear(images: torch.Tensor) -> torch.Tensor:
    size = (INCEPTION_SIZE, INCEPTION_SIZE)
    return F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)


def pil_bicubic(images: torch.Tensor) -> torch.Tensor:
    out = np.empty((images.shape[0], 3, INCEPTION_SIZE, INCEPTION_SIZE), np.float32)
    for i, image in enumerate(images.numpy().astype(np.float32)):  # per image, per channel
        for c in range(3):
            channel = Image.fromarray(image[c], mode="F")
            resized = channel.resize((INCEPTION_SIZE, INCEPTION_SIZE), Image.Resampling.BICUBIC)
            out[i, c] = np.clip(np.asarray(resized), 0, 255)
    return torch.from_numpy(out)


def as_is(images: torch.Tensor) -> torch.Tensor:
    return images.float()


CONVENTIONS = {"tf1_bilinear": resize_tf1_bilinear, "torch_bilinear": torch_bilinear,
               "pil_bicubic": pil_bicubic}  # fmt: skip


def embed(ext: InceptionFeatures, images: torch.Tensor, resize, batch: int, device) -> torch.Tensor:
    feats = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch):
            x = resize(images[start : start + batch]).to(device)
            feats.append(ext.embed(x).cpu())
    return torch.cat(feats)


def fid(a: torch.Tensor, b: torch.Tensor) -> float:
    sa, sb = FeatureStats(), FeatureStats()
    sa.append(a)
    sb.append(b)
    return frechet_distance(sa.mean(), sa.cov(), sb.mean(), sb.cov())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="image folder or zip (real photos)")
    p.add_argument("--num", type=int, default=250, help="images per half (default 250)")
    p.add_argument("--resolutions", default="128,256", help="loader resolutions R (comma list)")
    p.add_argument("--splits", type=int, default=5, help="random half/half splits (default 5)")
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    ext = InceptionFeatures().to(device)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    pick = None
    features: dict[str, torch.Tensor] = {}
    t0 = time.perf_counter()
    for r in [*resolutions, INCEPTION_SIZE]:
        ds = load_image_dataset(args.data, r, cache=False)
        if pick is None:
            if len(ds) < 2 * args.num:
                raise SystemExit(f"--num {args.num}: needs {2 * args.num} images, {len(ds)} found")
            order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
            pick = order[: 2 * args.num]
        images = ds.images[pick]
        if r == INCEPTION_SIZE:
            features["loader_299"] = embed(ext, images, as_is, args.batch, device)
            continue
        for name, resize in CONVENTIONS.items():
            features[f"R{r}/{name}"] = embed(ext, images, resize, args.batch, device)
        print(f"R={r}: embedded {2 * args.num} images x {len(CONVENTIONS)} conventions "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip

    splits = [
        torch.randperm(2 * args.num, generator=torch.Generator().manual_seed(s + 1))
        for s in range(args.splits)
    ]

    def fids(f: torch.Tensor) -> np.ndarray:
        return np.array([fid(f[s[: args.num]], f[s[args.num :]]) for s in splits])

    rows = []
    for r in resolutions:
        reference = fids(features[f"R{r}/tf1_bilinear"])
        for name in [*CONVENTIONS, "loader_299"]:
            key = "loader_299" if name == "loader_299" else f"R{r}/{name}"
            values = reference if name == "tf1_bilinear" else fids(features[key])
            diff = values - reference
            rows.append({"R": r, "convention": name, "fid_mean": values.mean(),
                         "fid_std": values.std(ddof=1), "diff_mean": diff.mean(),
                         "diff_std": diff.std(ddof=1)})  # fmt: skip
    print(f"\n{2 * args.num} images of {args.data}: {args.num} vs {args.num}, "
          f"{args.splits} random splits, {device}\n")  # fmt: skip
    print("| R | convention | FID (mean +- std) | FID - tf1_bilinear (mean +- std) |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        fid_text = f"{row['fid_mean']:.2f} +- {row['fid_std']:.2f}"
        diff_text = f"{row['diff_mean']:+.2f} +- {row['diff_std']:.2f}"
        print(f"| {row['R']} | {row['convention']} | {fid_text} | {diff_text} |")
    result = {"data": str(args.data), "num_per_half": args.num, "splits": args.splits,
              "device": str(device), "torch": torch.__version__,
              "python": platform.python_version(), "rows": rows}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result


if __name__ == "__main__":
    main()
