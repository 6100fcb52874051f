"""Reading the official code's network pickles as data, without running anything in them.

A ``network-snapshot-*.pkl`` of the official Projected GAN code is a plain :mod:`pickle` of a
dict holding whole ``nn.Module`` objects. Loading one with :func:`pickle.load` imports and calls
whatever the file names: the FastGAN networks and the discriminator are pickled by import path
(``pg_modules.networks_fastgan.Generator``, timm's EfficientNet blocks of 2021, torch.nn
layers), and the StyleGAN2 networks as ``torch_utils.persistence._reconstruct_persistent_obj``
records whose ``module_src`` (the full source text of their module) is ``exec``-ed on load.

:class:`RestrictedUnpickler` resolves every global through an explicit allow-list:

* tensors: ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` become inert
  :class:`~projected_gan.official.tensors.TensorRecord` s over storages that this library's own
  reader takes from ``torch.storage._load_from_bytes`` blobs (never ``torch.load``), onto the
  CPU (snapshots were pickled on the GPU); they become tensors once the whole file was read and
  the bytes they claim together fit the file;
* plain values: ``collections.OrderedDict``, ``dnnlib.util.EasyDict`` (as a dict), numpy
  numeric scalars and dtypes, ``builtins.set``/``frozenset``;
* module classes on :data:`ALLOWED_CLASSES` become :class:`Record` objects (the class path and
  the state pickle hands over), their classes are never imported;
* persistent records become :class:`Record` objects too, after their class name is checked
  against :data:`PERSISTENT_CLASSES` and the SHA-256 of ``module_src`` against the known
  official sources (:data:`KNOWN_SOURCES`); the source is hashed, never executed.

Any other global ends the read at the opcode that names it, before anything it names is called.
"""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from projected_gan.errors import ReadError, quote
from projected_gan.official.tensors import (
    StorageBlob,
    TensorRecord,
    read_storage_blob,
    rebuild_parameter,
    rebuild_tensor,
)

__all__ = [
    "ALLOWED_CLASSES",
    "KNOWN_SOURCES",
    "PERSISTENT_CLASSES",
    "OfficialPickleError",
    "Record",
    "RestrictedUnpickler",
    "load_network_pickle",
    "module_state_dict",
]


# Module classes that official snapshots name (FastGAN, the projected discriminator, timm
# 0.4.12's EfficientNet-lite0 blocks and their newer timm paths, torch.nn layers and
# spectral-norm hooks), by import path.
ALLOWED_CLASSES = frozenset(
    [f"pg_modules.networks_fastgan.{n}" for n in ("Generator", "DummyMapping")]
    + [f"pg_modules.networks_fastgan.{n}" for n in ("FastganSynthesis", "FastganSynthesisCond")]
    + [
        f"pg_modules.blocks.{n}"
        for n in (
            "InitLayer",
            "GLU",
            "Swish",
            "NoiseInjection",
            "SEBlock",
            "UpBlockSmallCond",
            "UpBlockBigCond",
            "CCBN",
            "DownBlock",
            "SeparableConv2d",
            "FeatureFusionBlock",
        )
    ]
    + [
        f"pg_modules.discriminator.{n}"
        for n in ("ProjectedDiscriminator", "MultiScaleD", "SingleDisc", "SingleDiscCond")
    ]
    + ["pg_modules.projector.F_RandomProj"]
    + [
        "timm.models.efficientnet_blocks.DepthwiseSeparableConv",
        "timm.models.efficientnet_blocks.InvertedResidual",
        "timm.models.layers.conv2d_same.Conv2dSame",
        # the same classes where newer timm keeps them (0.6-0.8, then 0.9 on), and the norm +
        # activation layer that replaces BatchNorm2d + act1 there (same tensors: weight, bias,
        # running_mean, running_var, num_batches_tracked); users who fixed the official code's
        # act1 for timm >= 0.9 pickle these
        "timm.models.layers.norm_act.BatchNormAct2d",
        "timm.models._efficientnet_blocks.DepthwiseSeparableConv",
        "timm.models._efficientnet_blocks.InvertedResidual",
        "timm.layers.conv2d_same.Conv2dSame",
        "timm.layers.norm_act.BatchNormAct2d",
    ]
    + [
        f"torch.nn.modules.{n}"
        for n in (
            "module.Module",
            "module._WrappedHook",
            "container.Sequential",
            "container.ModuleDict",
            "container.ModuleList",
            "conv.Conv2d",
            "conv.ConvTranspose2d",
            "linear.Linear",
            "linear.Identity",
            "sparse.Embedding",
            "batchnorm.BatchNorm2d",
            "activation.LeakyReLU",
            "activation.ReLU",
            "activation.ReLU6",
            "activation.Sigmoid",
            "pooling.AdaptiveAvgPool2d",
            "pooling.AvgPool2d",
            "upsampling.Upsample",
        )
    ]
    + [
        f"torch.nn.utils.spectral_norm.{n}"
        for n in ("SpectralNorm", "SpectralNormStateDictHook", "SpectralNormLoadStateDictPreHook")
    ]
    # CSM's unused add helper: torch 1.9 path, and where newer torch pickles it
    + [f"torch.{p}nn.quantized.modules.functional_modules.FloatFunctional" for p in ("", "ao.")]
)
# Classes of the official networks_stylegan2.py that a Generator pickle holds (persistent).
PERSISTENT_CLASSES = frozenset(
    [
        "Generator",
        "MappingNetwork",
        "SynthesisNetwork",
        "SynthesisBlock",
        "SynthesisLayer",
        "ToRGBLayer",
        "FullyConnectedLayer",
        "Conv2dLayer",
    ]
)
# SHA-256 of the module sources persistent records may carry -> where that source comes from.
KNOWN_SOURCES = {
    "e7c6bd62c13983b4f66c330ea3f0fb8534bf2762aca6c41f239795044d27ef13": (
        "autonomousvision/projected-gan pg_modules/networks_stylegan2.py (4924c66, unchanged "
        "to e1c246b)"
    ),
}
_NUMERIC_DTYPES = frozenset(
    ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"]
)


# Bounds on the structure of a pickle's modules (the official networks are about 10 deep and have
# under 2,000 submodules; a crafted file may share one subtree many times or make a cycle).
MAX_MODULE_DEPTH = 64
MAX_MODULE_VISITS = 20_000


class OfficialPickleError(ReadError):
    """A file that is not a readable official network pickle, or one this library refuses.

    An input error: the command line reports it in one line with exit code 2."""


class Record:
    """An object of the pickle kept as data: ``cls`` and the ``state`` pickle gave it.

    ``cls`` is the import path (``"pg_modules.blocks.DownBlock"``) or, for a persistent
    StyleGAN2 object, ``"persistent:<ClassName>"``; ``source_sha256`` is then the hash of its
    module source.
    """

    official_path = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Record:
        record = object.__new__(cls)
        record.cls = cls.official_path
        record.state = {}
        record.source_sha256 = None
        return record

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            merged: dict[str, Any] = {}
            for part in state:
                if part is not None and not isinstance(part, dict):
                    raise pickle.UnpicklingError(f"{self.cls}: state is not a dict")
                merged.update(part or {})
            state = merged
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError(f"{self.cls}: state is not a dict of names")
        self.state.update(state)

    def __repr__(self) -> str:
        return f"Record({self.cls})"


class _PlainDict(dict):
    """``dnnlib.util.EasyDict`` read as a plain dict (no attribute access, no code)."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:  # a dict's items come by SETITEMS, not BUILD
        if state not in (None, {}, (None, None), ({}, None)):
            raise pickle.UnpicklingError("a BUILD opcode with state on an EasyDict")


class _Call:
    """A function the pickle may call; ``BUILD`` on it is refused (it is never changed)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("a BUILD opcode on a function")


def _numpy_dtype(name: Any, *_flags: Any) -> np.dtype:
    text = str(name).lstrip("<>=|")
    if not isinstance(name, str) or text not in _NUMERIC_DTYPES:
        raise pickle.UnpicklingError(f"numpy dtype {name!r} is not a plain number type")
    return np.dtype(name)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype!r} refused")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar record with the wrong number of bytes")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds tensors, plain values and :class:`Record` s, and nothing else.

    Args:
        file: the open pickle.
        allow_sources: extra SHA-256 digests of ``module_src`` texts accepted for persistent
            records, beside :data:`KNOWN_SOURCES` (the source is still never executed; this only
            vouches that its classes have the official layout).

    Attributes:
        classes: every class path / persistent class name met, in order of first use.
        sources: SHA-256 of every persistent ``module_src`` met.
    """

    def __init__(self, file: Any, allow_sources: Iterable[str] = ()) -> None:
        super().__init__(file)
        self.allow_sources = {
            **KNOWN_SOURCES,
            **{s: "allowed by the caller" for s in allow_sources},
        }
        self.classes: dict[str, None] = {}
        self.sources: dict[str, str] = {}
        self.tensors: list[TensorRecord] = []
        self.storage_bytes = 0
        # this reader's own Record subclasses: a BUILD on one cannot reach another read
        self._record_classes: dict[str, type[Record]] = {}

    def _record_class(self, path: str) -> type[Record]:
        if path not in self._record_classes:
            name = path.rpartition(".")[2]
            self._record_classes[path] = type(name, (Record,), {"official_path": path})
        return self._record_classes[path]

    def _tensor(self, *args: Any) -> TensorRecord:
        record = rebuild_tensor(*args)
        self.tensors.append(record)
        return record

    def _storage(self, blob: Any) -> StorageBlob:
        storage = read_storage_blob(blob)
        self.storage_bytes += storage.nbytes
        return storage

    def find_class(self, module: str, name: str) -> Any:
        path = f"{module}.{name}"
        plain: dict[str, Callable[..., Any]] = {
            "collections.OrderedDict": collections.OrderedDict,
            "builtins.set": set,
            "builtins.frozenset": frozenset,
            "torch._utils._rebuild_tensor_v2": self._tensor,
            "torch._utils._rebuild_parameter": rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": rebuild_parameter,
            "torch.storage._load_from_bytes": self._storage,
            "numpy.dtype": _numpy_dtype,
            "numpy.core.multiarray.scalar": _numpy_scalar,
            "numpy._core.multiarray.scalar": _numpy_scalar,
            "torch_utils.persistence._reconstruct_persistent_obj": self._persistent,
        }
        if path in plain:
            return _Call(plain[path])
        if path == "dnnlib.util.EasyDict":
            return type("EasyDict", (_PlainDict,), {"__slots__": ()})  # this read's own class
        if path in ALLOWED_CLASSES:
            self.classes.setdefault(path)
            return self._record_class(path)
        raise OfficialPickleError(
            f"refused: the pickle names {path!r}, which is not on the allow-list of an official "
            "Projected GAN network pickle (nothing in the file was run)"
        )

    def _persistent(self, meta: Any) -> Record:
        """A persistent StyleGAN2 object, as a :class:`Record`; its source is hashed, not run."""
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise OfficialPickleError("refused: a persistent record that is not a class record")
        name, src = meta.get("class_name"), meta.get("module_src")
        if not isinstance(name, str) or not isinstance(src, str):
            raise OfficialPickleError("refused: a persistent record without class name or source")
        if name not in PERSISTENT_CLASSES:
            raise OfficialPickleError(
                f"refused: persistent class {name!r} is not one of the official StyleGAN2 "
                f"generator's classes ({', '.join(sorted(PERSISTENT_CLASSES))}); its embedded "
                "source was not run"
            )
        digest = hashlib.sha256(src.encode("utf-8")).hexdigest()
        if digest not in self.allow_sources:
            raise OfficialPickleError(
                f"refused: persistent class {name!r} carries module source with sha256 "
                f"{digest[:16]}..., which is not a known official networks_stylegan2.py; its "
                "source was not run"
            )
        self.sources[digest] = self.allow_sources[digest]
        self.classes.setdefault(f"persistent:{name}")
        record = self._record_class(f"persistent:{name}")()
        record.__setstate__(meta.get("state") or {})
        record.source_sha256 = digest
        return record


def load_network_pickle(
    path: str | os.PathLike, allow_sources: Iterable[str] = ()
) -> tuple[Any, RestrictedUnpickler]:
    """The pickle's top-level object, read by :class:`RestrictedUnpickler`, and the unpickler
    (for what it met). Raises :class:`OfficialPickleError` for anything unreadable or refused,
    or for tensors that claim together more bytes than the file holds."""
    path = Path(path)
    if not path.is_file():
        raise OfficialPickleError(f"{path} is not a file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        unpickler = RestrictedUnpickler(f, allow_sources)
        try:
            root = unpickler.load()
        except OfficialPickleError as exc:  # a refusal: say which file it came from
            raise OfficialPickleError(f"{path}: {exc}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError) as exc:
            raise OfficialPickleError(
                f"{path} is not a readable network pickle (truncated or corrupt?): "
                f"{type(exc).__name__}: {exc}"
            ) from None
        except (AttributeError, IndexError, MemoryError, RecursionError, OverflowError) as exc:
            raise OfficialPickleError(
                f"{path} is not a readable network pickle: {type(exc).__name__}: {exc}"
            ) from None
    claimed = sum(t.nbytes for t in unpickler.tensors)
    if claimed > size or unpickler.storage_bytes > size:
        raise OfficialPickleError(
            f"{path}: its tensors claim {max(claimed, unpickler.storage_bytes)} bytes, more than "
            f"the {size} bytes of the file"
        )
    return root, unpickler


def _named_children(record: Record) -> Iterator[tuple[str, Record | None]]:
    modules = record.state.get("_modules", {})
    if not isinstance(modules, dict):
        raise OfficialPickleError(f"{record.cls}: _modules is not a dict")
    for name, child in modules.items():
        if not isinstance(name, str):
            raise OfficialPickleError(f"{record.cls}: a submodule named {quote(name)}")
        if child is not None and not isinstance(child, Record):
            raise OfficialPickleError(f"{record.cls}.{name}: a submodule that is not a module")
        yield name, child


def module_state_dict(record: Record, prefix: str = "") -> dict[str, Tensor]:
    """What ``state_dict()`` of the pickled module would hold: parameters, persistent buffers
    and those of every submodule, under the official names (``synthesis.init.init.0.weight_orig``).

    The walk is bounded: a module that contains itself, more than :data:`MAX_MODULE_DEPTH` levels
    or more than :data:`MAX_MODULE_VISITS` modules (a subtree shared many times counts each time)
    is refused.
    """
    if not isinstance(record, Record):
        raise OfficialPickleError(
            f"{prefix or 'the object'} is {type(record).__name__}, not a module"
        )
    out: dict[str, Tensor] = {}
    visits = 0
    stack: list[tuple[Record, str, tuple[int, ...]]] = [(record, prefix, ())]
    while stack:
        node, at, path = stack.pop()
        visits += 1
        if visits > MAX_MODULE_VISITS or len(path) > MAX_MODULE_DEPTH:
            raise OfficialPickleError(
                f"{record.cls}: more than {MAX_MODULE_VISITS} submodules or {MAX_MODULE_DEPTH} "
                "levels (a subtree shared many times?)"
            )
        if id(node) in path:
            raise OfficialPickleError(f"{record.cls}: module {at.rstrip('.')} contains itself")
        skip = node.state.get("_non_persistent_buffers_set") or set()
        if not isinstance(skip, (set, frozenset)):
            raise OfficialPickleError(f"{at}_non_persistent_buffers_set is not a set")
        for group in ("_parameters", "_buffers"):
            entries = node.state.get(group, {})
            if not isinstance(entries, dict):
                raise OfficialPickleError(f"{at}{group} of {node.cls} is not a dict")
            for name, value in entries.items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(value, TensorRecord) or not isinstance(name, str):
                    raise OfficialPickleError(f"{at}{quote(name)} of {node.cls} is not a tensor")
                out[at + name] = value.tensor()
        children = [(n, c) for n, c in _named_children(node) if c is not None]
        for name, child in reversed(children):  # popped in order: the state dict's order
            stack.append((child, f"{at}{name}.", (*path, id(node))))
    return out


def submodule(record: Record, dotted: str) -> Record:
    """The pickled submodule at ``dotted`` (``"synthesis.feat_8"``); error naming it if absent."""
    node = record
    for name in dotted.split("."):
        child = dict(_named_children(node)).get(name)
        if child is None:
            raise OfficialPickleError(f"{record.cls} has no submodule {dotted!r}")
        node = child
    return node
