"""Rebuild ``flowers64.zip`` and ``flowers64_LICENSE.txt`` from the full flowers photo set.

Maintainers only; the package never imports this file. Run from the repository root:

    python projected_gan/assets/make_flowers64.py [--source ../shared/data/flowers]

The source is the 5-class flower photo collection (3,311 JPEGs, CC-BY 2.0) with its
``LICENSE.txt`` crediting each photo on a line ``<class>/<file>.jpg CC-BY ...``. From each class
folder, ``--per-class`` photos are drawn without replacement by ``random.Random(f"{seed}-{class}")``
from the sorted file names; each is centre-cropped to a square and resized with LANCZOS by the
same :func:`~projected_gan.data.decode.prepare_image` that training uses, then saved as
JPEG. The zip holds ``<class>/<original stem>.jpg`` plus ``LICENSE.txt``, stored uncompressed
(JPEGs do not shrink) with fixed timestamps, so the same inputs give a byte-identical zip.
"""

from __future__ import annotations

import argparse
import io
import random
import zipfile
from pathlib import Path

from PIL import Image

from projected_gan.data.decode import prepare_image

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[1].parent / "shared" / "data" / "flowers"
LICENCE_URL = "https://creativecommons.org/licenses/by/2.0/"
EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: reproducible bytes


def read_credits(licence: Path) -> tuple[str, dict[str, str]]:
    """The source URL (first line) and ``{"class/file.jpg": full credit line}``."""
    lines = licence.read_text(encoding="utf-8").splitlines()
    credits = {}
    for line in lines:
        name, _, rest = line.partition(" ")
        if "/" in name and name.lower().endswith(".jpg") and rest.startswith("CC-BY"):
            credits[name] = line
    return lines[0].strip(), credits


def choose(source: Path, per_class: int, seed: int) -> list[str]:
    """``class/file.jpg`` names: ``per_class`` per class folder, drawn reproducibly."""
    chosen = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        names = sorted(p.name for p in folder.glob("*.jpg"))
        if len(names) < per_class:
            raise SystemExit(f"{folder} has {len(names)} photos, fewer than {per_class}")
        picked = random.Random(f"{seed}-{folder.name}").sample(names, per_class)
        chosen += [f"{folder.name}/{n}" for n in sorted(picked)]
    return chosen


def encode(path: Path, resolution: int, quality: int) -> bytes:
    with Image.open(path) as image:
        pixels = prepare_image(image, resolution)
    out = io.BytesIO()
    Image.fromarray(pixels.transpose(1, 2, 0)).save(
        out, "JPEG", quality=quality, subsampling=0, optimize=True
    )
    return out.getvalue()


def licence_text(url: str, classes: list[str], lines: list[str], args: argparse.Namespace) -> str:
    r = args.resolution
    header = f"""\
flowers64: {len(lines)} flower photos ({args.per_class} each of {", ".join(classes)}), the
default training data shipped with projected-gan.

Source: the flower photo collection at {url}
Licence: each photo is licensed under Creative Commons Attribution 2.0 (CC-BY 2.0),
{LICENCE_URL}, by the photographer credited on its line below.
Changes: each photo was centre-cropped to a square, resized to {r}x{r} pixels (LANCZOS) and
re-encoded as JPEG (quality {args.quality}); the file names are the originals. The photos were
chosen at random (seed {args.seed}) by projected_gan/assets/make_flowers64.py.

Credits (file, licence, photographer, original page):
"""
    return header + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--quality", type=int, default=92)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    url, credits = read_credits(args.source / "LICENSE.txt")
    chosen = choose(args.source, args.per_class, args.seed)
    missing = [name for name in chosen if name not in credits]
    if missing:
        raise SystemExit(f"no credit line for {missing[:5]} in {args.source / 'LICENSE.txt'}")
    classes = sorted({name.split("/")[0] for name in chosen})
    text = licence_text(url, classes, [credits[name] for name in chosen], args)

    zip_path = args.out_dir / "flowers64.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        for name in chosen:
            member = str(Path(name).with_suffix(".jpg"))
            info = zipfile.ZipInfo(member, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, encode(args.source / name, args.resolution, args.quality))
        info = zipfile.ZipInfo("LICENSE.txt", date_time=EPOCH)
        info.external_attr = 0o644 << 16
        zf.writestr(info, text.encode("utf-8"))
    (args.out_dir / "flowers64_LICENSE.txt").write_text(text, encoding="utf-8")
    print(f"wrote {zip_path} ({zip_path.stat().st_size / 1e6:.2f} MB, {len(chosen)} images)")


if __name__ == "__main__":
    main()
