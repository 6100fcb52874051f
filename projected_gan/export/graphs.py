"""ONNX and TorchScript graphs of a generator: ``z`` [, one-hot ``c``] -> images in [-1, 1].

Graphs bake in the truncation psi and constant per-layer noise, so they are deterministic. They
are traced at one batch size with a dynamic batch axis, and run back here for the export check.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from projected_gan.atomic import atomic_write_bytes

__all__ = [
    "Sampler",
    "missing_onnx_module",
    "run_onnx",
    "run_torchscript",
    "write_onnx",
    "write_torchscript",
]


class Sampler(nn.Module):
    """``z`` ``(B, z_dim)`` [, one-hot ``c`` ``(B, c_dim)``] -> images ``(B, C, H, W)``, [-1, 1]."""

    def __init__(self, G: nn.Module, truncation_psi: float, noise_mode: str = "const") -> None:
        super().__init__()
        self.G = G
        self.truncation_psi = float(truncation_psi)
        self.noise_mode = noise_mode

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        images = self.G(z, c, truncation_psi=self.truncation_psi, noise_mode=self.noise_mode)
        return images.clamp(-1.0, 1.0)


def missing_onnx_module() -> str | None:
    """The first module of the ``onnx`` extra that cannot be imported, or None."""
    for name in ("onnx", "onnxscript", "onnxruntime"):  # exporter, its translator, the check
        try:
            __import__(name)
        except ImportError:
            return name
    return None


def write_onnx(sampler: Sampler, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """Export ``sampler`` with inputs ``z`` [, ``c``] and output ``images``, batch axis dynamic."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    names = ["z", "c"][: len(example)]
    # torch's exporter prints its progress; the CLI reports the result instead.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # One Dim shared by z and c: torch notes that it keeps a single axis name.
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
        program = torch.onnx.export(
            sampler,
            example,
            input_names=names,
            output_names=["images"],
            dynamic_shapes=tuple({0: batch} for _ in example),
            dynamo=True,
        )
    atomic_write_bytes(path, program.model_proto.SerializeToString())


def run_onnx(path: Path, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Run an exported graph with onnxruntime (CPU) on ``inputs``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
    return torch.from_numpy(session.run(None, feed)[0])


def write_torchscript(sampler: Sampler, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """Trace ``sampler`` on ``example`` and save it for ``torch.jit.load``."""
    with warnings.catch_warnings():
        # torch.jit.trace is deprecated in favour of torch.export, but TorchScript is still what
        # libtorch (C++) loads. The tracer also warns about the generators' input checks on
        # static dims (z_dim, w_dim); the export check runs another batch size against PyTorch.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(sampler, example, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    atomic_write_bytes(path, buf.getvalue())


def run_torchscript(path: Path, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Load a saved TorchScript graph on CPU and run it on ``inputs``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*")
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(*inputs)
