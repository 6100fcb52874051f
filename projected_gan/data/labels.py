"""Class labels of a source: ``dataset.json`` (the StyleGAN2-ADA / official format) or folders.

A folder or zip with ``dataset.json`` at its root, as written by the official ``dataset_tool.py``::

    {"labels": [["00000/img00000000.png", 6], ["00000/img00000001.png", 2], ...]}

labels each listed image with its integer class ``0 <= k < K``. The class names are ``"0"`` ...
``"K-1"``, unless the file also holds ``"class_names": ["cat", "dog", ...]`` (this library's
addition; ``K`` is then its length). Without ``dataset.json``, the first-level sub-folders are
the classes, sorted by name. Every problem is a :class:`DataError` naming the file at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from projected_gan.data.files import DataError, Source
from projected_gan.errors import one_line, quote
from projected_gan.safejson import JSONFileError, loads_bounded

__all__ = ["LABELS_FILE", "Labels", "read_labels"]

LABELS_FILE = "dataset.json"
MAX_CLASSES = 100_000  # a label beyond this is a corrupt or crafted file
_SHOW = 5  # how many example names an error gives


@dataclass(frozen=True)
class Labels:
    """``of[name]``: the class index of each image member; ``class_names[k]``: class ``k``'s name.

    ``origin`` says where they came from (``"dataset.json"`` or ``"folders"``).
    """

    class_names: list[str]
    of: dict[str, int]
    origin: str


def _examples(items: Sequence[str]) -> str:
    more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def _fail(message: str) -> DataError:
    return DataError(message, field="conditional")


def read_labels(source: Source, path: Path) -> Labels:
    """The labels of every member of ``source`` (a folder or zip at ``path``).

    Raises:
        DataError (``field="conditional"``): a malformed ``dataset.json`` (not JSON, ``labels``
            null or not a list of ``[name, int]`` pairs, a label < 0 or >= the number of class
            names, a member without a label, a label for a file that is not there); without
            ``dataset.json``, images outside class sub-folders or fewer than two classes.
    """
    raw = source.read_extra(LABELS_FILE)
    if raw is not None:
        return _from_dataset_json(raw, source, path / LABELS_FILE)
    return _from_folders(source, path)


def _from_dataset_json(raw: bytes, source: Source, where: Path) -> Labels:
    try:
        doc = loads_bounded(raw, str(where))
    except JSONFileError as e:
        raise _fail(f"{e}; expected {{'labels': [[name, int], ...]}}") from None
    if not isinstance(doc, dict) or "labels" not in doc:
        raise _fail(f"{where}: expected an object with 'labels': [[name, int], ...]")
    entries = doc["labels"]
    if entries is None:
        raise _fail(
            f"{where} has 'labels': null, so the images have no classes; turn data.conditional "
            f"off, or write the labels into it"
        )
    if not isinstance(entries, list):
        raise _fail(f"{where}: 'labels' must be a list of [name, int] pairs")
    of: dict[str, int] = {}
    for entry in entries:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
            raise _fail(f"{where}: expected [name, int] pairs in 'labels', got {quote(entry)}")
        name, label = entry[0].replace("\\", "/"), entry[1]
        if isinstance(label, bool) or not isinstance(label, int):
            raise _fail(
                f"{where}: the label of {one_line(name, 120)} is {quote(label)}, not an integer "
                "class index"
            )
        if not 0 <= label < MAX_CLASSES:
            raise _fail(
                f"{where}: the label of {one_line(name, 120)} is {label}; class indices start at 0 "
                f"and end at most at {MAX_CLASSES - 1}"
            )
        if name in of:
            raise _fail(f"{where}: {one_line(name, 120)} is labelled twice")
        of[name] = label
    names = doc.get("class_names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise _fail(f"{where}: 'class_names' must be a list of strings")
    count = len(names) if names is not None else max(of.values(), default=-1) + 1
    too_big = sorted(n for n, k in of.items() if k >= count)
    if too_big:
        raise _fail(
            f"{where}: {len(too_big)} label(s) are >= the {count} class names, e.g. "
            f"{_examples(too_big)}"
        )
    members = {m.name for m in source.members}
    unlabelled = sorted(members - of.keys())
    if unlabelled:
        raise _fail(
            f"{where} gives no label for {len(unlabelled)} image(s): {_examples(unlabelled)}"
        )
    missing = sorted(of.keys() - members)
    if missing:
        raise _fail(
            f"{where} labels {len(missing)} file(s) that are not images of {source.location}: "
            f"{_examples(missing)}"
        )
    class_names = names if names is not None else [str(k) for k in range(count)]
    return Labels(class_names, of, origin=LABELS_FILE)


def _from_folders(source: Source, path: Path) -> Labels:
    loose = [m.name for m in source.members if m.folder is None]
    if loose:
        raise _fail(
            f"labels (data.conditional) need every image inside a class sub-folder of {path} (or a "
            f"{LABELS_FILE}), but {len(loose)} sit directly in it (e.g. {_examples(loose)})"
        )
    names = sorted({m.folder for m in source.members if m.folder is not None})
    if len(names) < 2:
        raise _fail(
            f"labels (data.conditional) need at least two class sub-folders in {path}, found "
            f"{names}; point the path at the folder that holds the class folders, add a "
            f"{LABELS_FILE}, or turn labels off"
        )
    index = {c: k for k, c in enumerate(names)}
    return Labels(names, {m.name: index[m.folder] for m in source.members}, origin="folders")
