"""``read_network_pickle``: an official snapshot or released model as this library's parts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from projected_gan.errors import quote
from projected_gan.hashing import file_sha256
from projected_gan.official.discriminator import map_discriminator
from projected_gan.official.generators import map_generator
from projected_gan.official.tensors import TensorRecord
from projected_gan.official.unpickle import (
    OfficialPickleError,
    Record,
    load_network_pickle,
)

__all__ = ["OfficialNetworks", "read_network_pickle"]


@dataclass
class OfficialNetworks:
    """What an official network pickle holds, under this library's names.

    Attributes:
        path: the pickle.
        sha256: SHA-256 of the file.
        generator: our part config of G (``{"kind": "generators", "name", "kwargs"}``); G and
            G_ema share it.
        models: ``"G"``, ``"G_ema"`` and, when the pickle holds a discriminator, ``"D"``: state
            dicts under our names. ``"D"`` holds our ProjectedDiscriminator's trainable heads
            (``discriminator.*``) and its fixed random projection head (``projector.head.*``),
            never the pretrained feature network (``projector.feature_network.*``).
        discriminator: our ProjectedDiscriminator part config, when the pickle holds D.
        info: what else was read: ``cfg``, ``resolution``, ``c_dim``, ``kimg`` (when the
            snapshot records its progress), the training data settings, the classes met, and per
            model the tensors ``left_at_init`` / ``ignored`` with the reason.
    """

    path: Path
    sha256: str
    generator: dict[str, Any]
    models: dict[str, dict[str, Tensor]]
    discriminator: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


# Bounds on a pickled setting copied into the report (a shared nested list can stand for 10^8
# leaves in a few hundred bytes; a cycle for infinitely many).
MAX_SETTING_DEPTH = 8
MAX_SETTING_ITEMS = 2_000
MAX_TEXT = 4_096


def _plain(value: Any, where: str, budget: list[int] | None = None, depth: int = 0) -> Any:
    """JSON-friendly copy of a pickled setting (tensors of one value become numbers); refused
    when deeper than :data:`MAX_SETTING_DEPTH` or larger than :data:`MAX_SETTING_ITEMS` values,
    shared references counted each time."""
    budget = [MAX_SETTING_ITEMS] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_SETTING_DEPTH:
        raise OfficialPickleError(
            f"{where} is nested deeper than {MAX_SETTING_DEPTH} or holds more than "
            f"{MAX_SETTING_ITEMS} values"
        )
    if isinstance(value, dict):
        return {str(k)[:MAX_TEXT]: _plain(v, where, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where, budget, depth + 1) for v in value]
    if isinstance(value, TensorRecord):
        return value.tensor().item() if value.numel() == 1 else None
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise OfficialPickleError(f"{where}: a text of {len(value)} characters")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return quote(value)


# What the official training_set_kwargs hold that this library reads, and their types.
_DATA_SETTINGS = {"path": str, "max_size": int, "resolution": int, "use_labels": bool}


def _training_set(root: dict[str, Any], path: Path) -> dict[str, Any] | None:
    where = f"{path}: training_set_kwargs"
    data = _plain(root.get("training_set_kwargs"), where)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise OfficialPickleError(f"{where} is {quote(data)}, not a dict")
    for key, kind in _DATA_SETTINGS.items():
        value = data.get(key)
        if value is not None and (
            not isinstance(value, kind) or (kind is int) != (type(value) is int)
        ):
            raise OfficialPickleError(f"{where}.{key} is {quote(value)}, expected {kind.__name__}")
    return data


@contextlib.contextmanager
def _malformed(path: Path, key: str) -> Iterator[None]:
    """A network whose records are not of the official shape (a value of another type, a
    missing submodule, a bad name) ends in one line naming the file, not a traceback."""
    try:
        yield
    except OfficialPickleError as exc:
        if path.name in str(exc):
            raise
        raise OfficialPickleError(f"{path} [{key}]: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError,
            OverflowError, ZeroDivisionError, RuntimeError) as exc:  # fmt: skip
        raise OfficialPickleError(
            f"{path} [{key}] is not an official network: {type(exc).__name__}: {exc}"
        ) from None


def _progress(root: dict[str, Any]) -> dict[str, Any]:
    progress = root.get("progress")
    if not isinstance(progress, dict):
        return {}
    out: dict[str, Any] = {}
    nimg = _plain(progress.get("cur_nimg"), "progress")
    if isinstance(nimg, int):
        out["kimg"] = nimg / 1000
    tick = _plain(progress.get("cur_tick"), "progress")
    if isinstance(tick, int):
        out["tick"] = tick
    best = _plain(progress.get("best_fid"), "progress")
    if isinstance(best, (int, float)) and best < 9999:  # 9999: no FID computed yet
        out["best_fid50k_full"] = best
    return out


def read_network_pickle(
    path: str | os.PathLike, *, allow_sources: Iterable[str] = ()
) -> OfficialNetworks:
    """Read an official Projected GAN network pickle safely and map it onto our modules.

    Works for ``network-snapshot*.pkl`` / ``best_model.pkl`` of the official training loop and
    for the released models: a dict with ``G``, ``G_ema`` and ``D`` (FastGAN, FastGAN-lite or
    StyleGAN2 generators, unconditional or conditional; the EfficientNet-lite0 projected
    discriminator). Nothing in the file is executed (see
    :mod:`projected_gan.official.unpickle`).

    Args:
        path: the pickle.
        allow_sources: SHA-256 digests of further StyleGAN2 ``module_src`` texts to accept as
            the official layout (they are never executed).

    Raises:
        OfficialPickleError: not a pickle, a refused class or source, not G/G_ema/D of the
            official code, or tensors that do not fit our modules; the message names what.
    """
    path = Path(path)
    if not path.is_file():
        raise OfficialPickleError(f"network pickle {str(path)!r} does not exist")
    sha256 = file_sha256(path)
    root, unpickler = load_network_pickle(path, allow_sources)
    if not isinstance(root, dict) or not isinstance(root.get("G_ema", root.get("G")), Record):
        found = sorted(map(str, root)) if isinstance(root, dict) else type(root).__name__
        raise OfficialPickleError(
            f"{path} is a pickle but not an official network snapshot: expected a dict with "
            f"'G', 'G_ema' and 'D' networks, found {found}"
        )
    names = [k for k in ("G", "G_ema") if isinstance(root.get(k), Record)]
    generator: dict[str, Any] | None = None
    models: dict[str, dict[str, Tensor]] = {}
    report: dict[str, Any] = {}
    for key in names:
        with _malformed(path, key):
            config, mapped = map_generator(root[key], f"{path.name} [{key}]")
        if generator is not None and config != generator:
            raise OfficialPickleError(f"{path}: G and G_ema are different architectures")
        generator = config
        models[key] = mapped.state
        report[key] = {
            "tensors": len(mapped.state),
            "left_at_init": mapped.left_at_init,
            "ignored": mapped.ignored,
        }
    assert generator is not None
    kwargs = generator["kwargs"]
    info: dict[str, Any] = {
        "format": "official Projected GAN network pickle",
        "cfg": generator["name"],  # the official --cfg: fastgan, fastgan_lite or stylegan2
        "resolution": kwargs["img_resolution"],
        "c_dim": kwargs["c_dim"],
        **_progress(root),
        "training_set_kwargs": _training_set(root, path),
        "classes": list(unpickler.classes),
        "persistent_sources": dict(unpickler.sources),
    }
    discriminator = None
    if isinstance(root.get("D"), Record):
        with _malformed(path, "D"):
            discriminator, mapped, features = map_discriminator(
                root["D"], kwargs["img_resolution"], kwargs["c_dim"], f"{path.name} [D]"
            )
        models["D"] = mapped.state
        report["D"] = {
            "tensors": len(mapped.state),
            "left_at_init": mapped.left_at_init,
            "ignored": {  # one line for the whole trunk rather than its 288 names
                "feature_network.pretrained.*": f"{len(mapped.ignored)} tensors of the "
                f"{features['name']} trunk: this library uses its own ImageNet weights"
            },
        }
        info["feature_network"] = features
    info["models"] = report
    for state in models.values():  # each tensor its own contiguous memory (one official tensor
        for key, value in state.items():  # may fill two of ours, and safetensors refuses sharing)
            state[key] = value.detach().clone(memory_format=torch.contiguous_format)
    return OfficialNetworks(
        path=path,
        sha256=sha256,
        generator=generator,
        models=models,
        discriminator=discriminator,
        info=info,
    )
