"""Training precision modes: what runs in bf16, what stays in fp32, and whether TF32 is used.

``train.precision`` names one of :data:`PRECISIONS`; :func:`resolve_precision` turns it into a
:class:`Precision` for a device. The modes:

- ``fp32``: everything in fp32, TF32 off (the official code).
- ``tf32``: fp32 tensors, matmuls and convolutions on TF32 tensor cores (CUDA; fp32 elsewhere).
- ``bf16``: bf16 autocast around G and the whole discriminator (feature network included).
- ``bf16_fp32_features``: bf16 autocast for G and the discriminator heads, while the
  augmentation, the frozen feature network and the projection, and so the gradient path
  through them back to G, run in fp32.
- ``auto``: :data:`AUTO_CUDA` on CUDA, ``fp32`` elsewhere. Chosen by measurement
  (``benchmarks/precision_parity.py``, results in ``benchmarks/README.md``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "AUTO_CUDA",
    "PRECISIONS",
    "Precision",
    "configure_torch",
    "cpu_has_native_bf16",
    "fp32_region",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "tf32", "bf16", "bf16_fp32_features")
# What "auto" means on CUDA. See benchmarks/README.md, "precision_parity.py", for the numbers.
AUTO_CUDA = "tf32"


@dataclass(frozen=True)
class Precision:
    """A resolved precision mode.

    Attributes:
        mode: one of :data:`PRECISIONS` other than ``auto``.
        autocast: run G and D under bf16 autocast.
        fp32_features: D's augmentation, feature network and projection leave autocast (fp32).
        tf32: allow TF32 for the matmuls and convolutions that stay fp32 (CUDA only).
    """

    mode: str
    autocast: bool
    fp32_features: bool
    tf32: bool

    def autocast_context(self, device_type: str) -> Any:
        """bf16 autocast when this mode uses it, else a no-op context."""
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.autocast)

    def configure(self, discriminator: torch.nn.Module) -> None:
        """Tell a discriminator with an ``fp32_features`` switch (ProjectedDiscriminator)."""
        if hasattr(discriminator, "fp32_features"):
            discriminator.fp32_features = self.fp32_features


def resolve_precision(mode: str, device: torch.device | str, tf32: bool | None = None) -> Precision:
    """The :class:`Precision` for ``mode`` on ``device``.

    Args:
        mode: one of :data:`PRECISIONS`.
        device: where training runs; ``auto`` and TF32 depend on its type.
        tf32: force TF32 on or off for the fp32 parts; None = on for every mode but ``fp32``.
            Only CUDA has TF32; elsewhere it is always off.
    """
    if mode not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {mode!r}")
    cuda = torch.device(device).type == "cuda"
    if mode == "auto":
        mode = AUTO_CUDA if cuda else "fp32"
    use_tf32 = (mode != "fp32") if tf32 is None else bool(tf32)
    return Precision(
        mode=mode,
        autocast=mode in ("bf16", "bf16_fp32_features"),
        fp32_features=mode == "bf16_fp32_features",
        tf32=use_tf32 and cuda,
    )


def configure_torch(train: Any, device: torch.device) -> None:
    """Global torch switches of a run's ``train`` section (``precision``, ``tf32``,
    ``deterministic``) on ``device``: TF32, cuDNN autotuning, deterministic algorithms."""
    if device.type == "cuda":
        tf32 = resolve_precision(train.precision, device, train.tf32).tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = not train.deterministic
    if train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.deterministic = True


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), as torch reports it.

    Only there does bf16 autocast speed CPU training up (1.6-1.75x a step on an AMX Xeon,
    ``benchmarks/README.md``); elsewhere bf16 is emulated and slower than fp32
    (2.2x a step on a 2-vCPU AVX-512 Xeon without BF16,
    ``benchmarks/results/train_throughput.md``). ``auto``
    does not use it: the CPU demo (``examples/train_minimal.py``) opts in, by measurement.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, torch>=2.1
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def fp32_region(device_type: str) -> Any:
    """A context that switches autocast off (a no-op where autocast does not exist)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()
