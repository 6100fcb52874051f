"""Crafted files of every kind the readers take, written by the tests (no file is downloaded).

Each builder writes one hostile file (or folder) into a folder and returns its path; the tests
(tests/test_hostile_files.py) and the fuzz benchmark (benchmarks/fuzz_readers.py) read them.
The pickles reuse tests/official_structure.py for the official layout; the gadgets are written
opcode by opcode, so what a plain ``pickle.load`` would run is explicit here.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from tests import official_structure as official

MAGIC = 0x1950A86A20F9469CFC6C


def storage_blob(values: torch.Tensor) -> bytes:
    """torch's own blob of the storage of ``values`` (what ``_load_from_bytes`` reads)."""
    typed = torch.TypedStorage(
        wrap_storage=values.untyped_storage(), dtype=values.dtype, _internal=True
    )
    return typed.__reduce__()[1][0]


class _Sentinel:
    pass


def crafted_blob(storage_class: str, numel: int, data: bytes, extra: bytes = b"") -> bytes:
    """A storage blob in torch's legacy format claiming ``numel`` elements of ``storage_class``
    (``"torch FloatStorage"``), followed by ``data``; ``extra`` is spliced into its main pickle."""
    module, name = storage_class.split()
    out = io.BytesIO()
    for value in (MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(value, out, protocol=2)
    main = (
        b"\x80\x02(X\x07\x00\x00\x00storage"
        + f"c{module}\n{name}\n".encode()
        + b"X\x01\x00\x00\x00kX\x03\x00\x00\x00cpu"
        + b"\x8a\x08"
        + struct.pack("<q", numel)
        + b"Nt"
        + extra
        + b"Q."
    )
    out.write(main)
    pickle.dump(["k"], out, protocol=2)
    out.write(struct.pack("<q", numel))
    out.write(data)
    return out.getvalue()


def _binbytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def storage_ops(blob: bytes) -> bytes:
    return b"ctorch.storage\n_load_from_bytes\n(" + _binbytes(blob) + b"tR"


def tensor_ops(blob: bytes | None, size: tuple, stride: tuple, offset: int = 0,
               storage: bytes | None = None) -> bytes:  # fmt: skip
    """Opcodes of ``_rebuild_tensor_v2(_load_from_bytes(blob), offset, size, stride, False,
    OrderedDict())`` (protocol 2); ``storage``: other opcodes that push the storage."""

    def ints(values: tuple) -> bytes:
        return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"

    return (
        b"ctorch._utils\n_rebuild_tensor_v2\n("
        + (storage if storage is not None else storage_ops(blob))
        + b"J"
        + struct.pack("<i", offset)
        + ints(size)
        + ints(stride)
        + b"\x89ccollections\nOrderedDict\n)RtR"
    )


def dict_pickle(items: list[tuple[str, bytes]]) -> bytes:
    """A protocol-2 pickle of a dict whose values are the given opcode sequences."""
    body = b"".join(b"X" + struct.pack("<I", len(k)) + k.encode() + v for k, v in items)
    return b"\x80\x02}(" + body + b"u."


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------ gadgets


def gadgets(folder: Path, marker: Path) -> dict[str, Path]:
    """Pickles that run a command (writing ``marker``) when a plain unpickler loads them."""
    cmd = f"touch {marker}".encode()
    py = f"open({str(marker)!r}, 'w').write('ran')".encode()
    q = struct.pack("<I", len(cmd))
    files = {
        "os_system": b"\x80\x02cos\nsystem\nX" + q + cmd + b"\x85R.",
        "exec_stack_global": b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93X"
        + struct.pack("<I", len(py))
        + py
        + b"\x85R.",
        "inst": b"(X" + q + cmd + b"ios\nsystem\n.",
        "obj_popen": b"\x80\x02(csubprocess\nPopen\n(X\x05\x00\x00\x00touchX"
        + struct.pack("<I", len(str(marker)))
        + str(marker).encode()
        + b"lo.",
        "copyreg": b"\x80\x02ccopyreg\n_reconstructor\n"
        b"(cos\n_wrap_close\nc__builtin__\nobject\nNtR.",
        "numpy_reconstruct": b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n"
        b"(cnumpy\nndarray\nK\x00\x85C\x01btR.",
        "object_dtype": b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8K\x00K\x01\x87R.",
        "ext1": b"\x80\x02\x82\x01)R.",
        "binpersid": b"\x80\x02X\x01\x00\x00\x00xQ.",
        "blob_gadget": dict_pickle(
            [
                (
                    "G",
                    tensor_ops(
                        crafted_blob(
                            "torch FloatStorage",
                            1,
                            b"\0" * 4,
                            b"cos\nsystem\nX" + q + cmd + b"\x85R0",
                        ),
                        (1,),
                        (1,),
                    ),
                )
            ]
        ),
    }
    return {name: write(folder / f"{name}.pkl", data) for name, data in files.items()}


# -------------------------------------------------------------------------- structural attacks


def build_on_tensor(folder: Path) -> Path:
    """BUILD with the old 4-tuple tensor state: ``set_()`` to a storage of 10^6 elements."""
    blob = storage_blob(torch.arange(4.0))
    storage = b"ctorch.storage\n_load_from_bytes\n(" + _binbytes(blob) + b"tR"
    state = b"(" + storage + b"K\x00(J\x40\x42\x0f\x00t(K\x01tt"
    ops = tensor_ops(blob, (4,), (1,)) + state + b"b"
    return write(folder / "build_on_tensor.pkl", dict_pickle([("G", ops)]))


def stride_zero(folder: Path) -> Path:
    """Tensors of 10^9 elements over a 4-byte storage (stride 0): 15 bytes claim 4 GB."""
    blob = storage_blob(torch.zeros(1))
    items = [(f"t{i}", tensor_ops(blob, (1000, 1000, 1000), (0, 0, 0))) for i in range(8)]
    return write(folder / "stride_zero.pkl", dict_pickle(items))


def huge_storage(folder: Path) -> Path:
    """A storage blob claiming 9 * 10^9 floats (36 GB) over 4 bytes."""
    blob = crafted_blob("torch FloatStorage", 9_000_000_000, b"\0" * 4)
    return write(folder / "huge_storage.pkl", dict_pickle([("G", tensor_ops(blob, (1,), (1,)))]))


def shared_storage_views(folder: Path, count: int = 100) -> Path:
    """``count`` tensors viewing one memo-shared 16 KB storage whole: 1.6 MB claimed."""
    blob = storage_blob(torch.zeros(4096))
    first = storage_ops(blob) + b"q\x00"
    items = [("t0", tensor_ops(None, (4096,), (1,), storage=first))]
    items += [(f"t{i}", tensor_ops(None, (4096,), (1,), storage=b"h\x00")) for i in range(1, count)]
    return write(folder / "shared_views.pkl", dict_pickle(items))


def qint8_storage(folder: Path) -> Path:
    blob = crafted_blob("torch QInt8Storage", 4, b"\0" * 4)
    return write(folder / "qint8.pkl", dict_pickle([("G", tensor_ops(blob, (4,), (1,)))]))


def easydict_class_build(folder: Path) -> Path:
    """BUILD with slot state on the EasyDict class itself (would set class attributes)."""
    ops = b"cdnnlib.util\nEasyDict\n(N}X\x06\x00\x00\x00hackedK\x01stb"
    return write(folder / "easydict_build.pkl", dict_pickle([("training_set_kwargs", ops)]))


def shared_nest(levels: int = 26) -> list:
    """A list of 2^levels leaves that pickles in a few hundred bytes (memo-shared)."""
    value: list = [1]
    for _ in range(levels):
        value = [value, value]
    return value


def snapshot_file(
    folder: Path, name: str, G: torch.nn.Module, change: Any = None, **top: Any
) -> Path:
    """An official-layout FastGAN snapshot of our ``G`` (no D), ``change(theirs)`` applied to
    the official generator, ``top`` added to the top-level dict."""
    theirs = official.fastgan_generator(G)
    if change is not None:
        change(theirs)
    data = official.snapshot(theirs, theirs, None)
    data.update(top)
    return official.dump(data, folder / name)


# ------------------------------------------------------------------ checkpoints and exports


def checkpoint_bytes(meta: Any, tensors: dict[str, torch.Tensor] | None = None) -> bytes:
    meta_text = meta if isinstance(meta, str) else json.dumps(meta)
    tensors = tensors or {"model.G_ema.x": torch.zeros(1)}
    return st_save(tensors, metadata={"format": "projected-gan-checkpoint/1", "meta": meta_text})


def export_folder(
    folder: Path, config: Any, tensors: dict[str, torch.Tensor] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (folder / "config.json").write_text(text)
    (folder / "model.safetensors").write_bytes(st_save(tensors or {"x": torch.zeros(1)}))
    return folder


def export_config(name: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "format": "projected-gan-export/1",
        "generator": {"kind": "generators", "name": name, "kwargs": kwargs},
    }


def deep_json(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth
