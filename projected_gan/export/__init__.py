"""Exporting a trained generator: a small self-describing folder, ONNX, or TorchScript.

An export folder holds ``config.json`` (the registered generator's name and constructor
arguments, the diffusers ``from_pretrained`` convention), one model file, a ``README.md`` model
card and ``samples.png``. Formats:

* ``safetensors``: the generator's weights (``model.safetensors``); :func:`load_exported_generator`
  (and :func:`projected_gan.load_generator`) rebuild it through the registry, without the spec,
  the discriminator or the trainer. StyleGAN2 keeps its mapping network and ``w_avg``, so
  ``G(z, c, truncation_psi)`` truncates as before.
* ``onnx``: ``model.onnx``, inputs ``z`` ``(B, z_dim)`` float32 [and ``c`` ``(B, c_dim)`` one-hot
  float32 when conditional], dynamic batch, output ``images`` ``(B, C, H, W)`` in [-1, 1].
  Needs the ``onnx`` extra (``pip install 'projected-gan[onnx]'``).
* ``torchscript``: ``model.torchscript.pt``, same inputs and output, for ``torch.jit.load``.

``config.json``'s ``interface`` records ``img_resolution`` (one side when square, else
``[H, W]``), ``img_size`` (``[H, W]``, always) and ``img_channels`` (1-16).

Graphs bake in the truncation psi and constant per-layer noise (``noise_mode="const"``), so they
are deterministic. Every export is checked when it is made: the graph (or the reloaded weights)
runs against PyTorch on the same latents, and the max abs difference goes into ``config.json``.
"""

from projected_gan.export.card import training_record, write_card_text
from projected_gan.export.folder import (
    CONFIG_NAME,
    EXPORT_FILES,
    ExportedWeights,
    ExportError,
    ExportResult,
    export_checkpoint,
    export_generator,
    is_export_dir,
    load_exported_generator,
    read_export_config,
    read_exported_weights,
)

__all__ = [
    "CONFIG_NAME",
    "EXPORT_FILES",
    "ExportError",
    "ExportResult",
    "ExportedWeights",
    "export_checkpoint",
    "export_generator",
    "is_export_dir",
    "load_exported_generator",
    "read_export_config",
    "read_exported_weights",
    "training_record",
    "write_card_text",
]
