"""Standard FID: Inception-v3 (TF 2015-12-05 weights) pool features via torch-fidelity.

Exact preprocessing, identical to torch-fidelity's ``inception-v3-compat`` (and so to the
original TensorFlow FID): images are **uint8** (generated ones quantised by rounding
``(x + 1) * 127.5``, see :func:`~projected_gan.metrics.features.quantize_images`),
resized to 299 x 299 with TensorFlow-1.x bilinear interpolation (align_corners=False, **no
antialiasing**; torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x``), scaled by
``(x - 128) / 128`` and passed through the network in float32; the 2048-d average-pooled
features feed :func:`~projected_gan.metrics.frechet.frechet_distance`.

Weights (``weights-inception-2015-12-05-6726825d.pth``, 95 MB) are found, in order: the
``weights=`` argument (spec ``metrics.fid_weights``, CLI ``--inception-weights``), the
``PROJECTED_GAN_INCEPTION_WEIGHTS`` environment variable, the torch hub cache
(``$TORCH_HOME/hub/checkpoints/``, where torch-fidelity itself keeps them), then a download into
that cache when ``download=True``. Files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import torch

from projected_gan.metrics.base import FeatureExtractor, Metric, module_fingerprint
from projected_gan.metrics.frechet import frechet_distance
from projected_gan.metrics.stats import FeatureStats
from projected_gan.registry import METRICS

__all__ = [
    "INCEPTION_URL",
    "INCEPTION_WEIGHTS_ENV",
    "FrechetInceptionDistance",
    "InceptionFeatures",
    "MetricWeightsError",
    "resolve_inception_weights",
]

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FILENAME = INCEPTION_URL.rsplit("/", 1)[1]
INCEPTION_WEIGHTS_ENV = "PROJECTED_GAN_INCEPTION_WEIGHTS"
_DOWNLOAD_TIMEOUT_S = 30.0


class MetricWeightsError(RuntimeError):
    """A metric's network weights are missing or unreadable; the message says how to get them."""


def _hub_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME


def _how_to_get(reason: str) -> str:
    return (
        f"fid needs the Inception-v3 (2015-12-05) weights converted by torch-fidelity: {reason}\n"
        f"  1. On a machine with internet, download {INCEPTION_URL}\n"
        f"     (e.g. curl -L -O {INCEPTION_URL}).\n"
        "  2. Copy the file here and either pass it: weights=PATH in Python, "
        "metrics.fid_weights in the spec, --inception-weights PATH on the command line;\n"
        f"     or set {INCEPTION_WEIGHTS_ENV}=PATH;\n"
        f"     or put it at {_hub_path()} (torch hub cache, found automatically)."
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


def resolve_inception_weights(
    weights: str | os.PathLike | None = None, download: bool = True
) -> Path:
    """Path of the Inception weights file (see the module docstring for the search order).

    Raises:
        MetricWeightsError: a given path does not exist, or nothing was found and the download
            is off or failed; the message explains how to get the file.
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
    cached = _hub_path()
    if cached.is_file():
        return cached
    if not download:
        raise MetricWeightsError(
            _how_to_get(f"no weights given, {INCEPTION_WEIGHTS_ENV} unset, none at {cached}.")
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(_DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=False)
    except Exception as exc:  # offline, proxy, HTTP error: all end in the same advice
        raise MetricWeightsError(
            _how_to_get(f"no local weights, and the download failed ({type(exc).__name__}: {exc}).")
        ) from exc
    return cached


class InceptionFeatures(FeatureExtractor):
    """torch-fidelity's TF-compatible Inception-v3: uint8 ``(B, 3, H, W)`` -> ``(B, 2048)``.

    Args:
        weights: path of the weights file; ``None`` searches as described in the module doc.
        download: allow downloading into the torch hub cache when nothing local is found.
    """

    def __init__(self, weights: str | os.PathLike | None = None, download: bool = True) -> None:
        super().__init__()
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as exc:
            raise ImportError(
                "fid needs torch-fidelity (its Inception-v3 port): pip install torch-fidelity"
            ) from exc
        path = resolve_inception_weights(weights, download=download)
        try:  # safe read first: a weights file must not run code when unpickled
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise MetricWeightsError(
                _how_to_get(f"{path} is not a readable PyTorch state dict ({exc}).")
            ) from exc
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise MetricWeightsError(_how_to_get(f"{path} does not hold a state dict of tensors."))
        try:
            # torch-fidelity reads the file itself (now known to be a plain tensor dict).
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)
            )
        except RuntimeError as exc:  # missing/unexpected keys or wrong shapes
            raise MetricWeightsError(
                _how_to_get(f"{path} does not match torch-fidelity's Inception-v3: {exc}")
            ) from exc
        self.identity = f"inception-v3-compat-2048:{module_fingerprint(self.net)}"

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` -> float32 ``(B, 2048)``."""
        return self.net(images)[0]


@METRICS.register("fid", tags=("inception",))
class FrechetInceptionDistance(Metric):
    """Standard FID (Inception-v3 2015-12-05, torch-fidelity preprocessing); comparable with papers.

    Result: ``{"fid": value}``. ``weights``: local weights file (else env var, torch hub cache,
    then download if ``download``); without any, :class:`MetricWeightsError` explains how to get
    the file.
    """

    def __init__(self, weights: str | None = None, download: bool = True) -> None:
        self.weights = weights
        self.download = download

    def extractor_key(self) -> str:
        return f"inception-v3-compat-2048:{self.weights}:{self.download}"

    def build_extractor(self) -> InceptionFeatures:
        return InceptionFeatures(self.weights, download=self.download)

    def compute(self, real: FeatureStats, fake: FeatureStats, seed: int = 0) -> dict[str, float]:
        return {"fid": frechet_distance(real.mean(), real.cov(), fake.mean(), fake.cov())}
