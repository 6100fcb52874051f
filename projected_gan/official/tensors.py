"""Tensors of a network pickle, read by this library's own code and kept inert until checked.

A tensor in a pickle is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
over a storage record ``torch.storage._load_from_bytes(blob)``, the blob being torch's legacy
serialisation of one storage: five pickles (magic number, protocol 1001, system info, the storage
as a persistent id, the list of its keys), then per storage an 8-byte element count and the raw
bytes. :func:`read_storage_blob` reads that format itself: the blob's pickles go through an
unpickler that knows only the numeric storage classes, so the safety of a network pickle does not
rest on the installed torch's ``weights_only`` loader (torch < 2.6 and < 2.10 have public
advisories against it).

:class:`TensorRecord` is what a tensor record becomes while the pickle is read: its storage
bytes, dtype, offset, sizes and strides, checked to fit the storage without overlap. It is not a
tensor: a ``BUILD`` opcode on it is refused (``Tensor.__setstate__`` would ``set_()`` a storage
of any size), and the reader turns records into tensors only after the whole file was read and
the bytes all records claim together are known to fit the file (:meth:`TensorRecord.tensor`).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch

__all__ = [
    "StorageBlob",
    "TensorRecord",
    "read_storage_blob",
    "rebuild_parameter",
    "rebuild_tensor",
]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001
# The storage classes a numeric tensor has (legacy typed storages, and the untyped one).
STORAGE_DTYPES = {
    "torch.FloatStorage": torch.float32,
    "torch.DoubleStorage": torch.float64,
    "torch.HalfStorage": torch.float16,
    "torch.BFloat16Storage": torch.bfloat16,
    "torch.LongStorage": torch.int64,
    "torch.IntStorage": torch.int32,
    "torch.ShortStorage": torch.int16,
    "torch.CharStorage": torch.int8,
    "torch.ByteStorage": torch.uint8,
    "torch.BoolStorage": torch.bool,
    "torch.storage.UntypedStorage": torch.uint8,
    "torch.UntypedStorage": torch.uint8,
}
MAX_DIMS = 8  # no official tensor has more than 4 dimensions


class _BlobUnpickler(pickle.Unpickler):
    """The pickles inside a storage blob: plain values and one storage persistent id."""

    def find_class(self, module: str, name: str) -> Any:
        path = f"{module}.{name}"
        if path not in STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"a tensor storage names {path!r}, not a number storage")
        return STORAGE_DTYPES[path]

    def persistent_load(self, pid: Any) -> Any:
        if (
            not isinstance(pid, tuple)
            or len(pid) not in (5, 6)
            or pid[0] != "storage"
            or not isinstance(pid[1], torch.dtype)
            or not isinstance(pid[2], str)
            or type(pid[4]) is not int
            or (len(pid) == 6 and pid[5] is not None)
        ):
            raise pickle.UnpicklingError("a tensor storage has a malformed storage id")
        return pid


class StorageBlob:
    """One storage of a pickle: its raw bytes and element type (a tensor made on demand)."""

    __slots__ = ("_tensor", "data", "dtype")

    def __init__(self, data: bytes, dtype: torch.dtype) -> None:
        self.data, self.dtype, self._tensor = data, dtype, None

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("a BUILD opcode on a tensor storage")

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def tensor(self) -> torch.Tensor:
        """The storage as a flat tensor of its dtype (its own writable copy of the bytes)."""
        if self._tensor is None:
            flat = torch.frombuffer(bytearray(self.data), dtype=torch.uint8)
            self._tensor = flat.view(self.dtype) if self.data else flat.to(self.dtype)
        return self._tensor


def read_storage_blob(blob: Any) -> StorageBlob:
    """What ``torch.storage._load_from_bytes(blob)`` would load, read by this library's code:
    exactly one storage of a number type, its declared size exactly the bytes that follow."""
    if not isinstance(blob, (bytes, bytearray)):
        raise pickle.UnpicklingError("a tensor storage record does not hold bytes")
    f = io.BytesIO(blob)
    try:
        magic, protocol, info = (_BlobUnpickler(f).load() for _ in range(3))
        pid = _BlobUnpickler(f).load()
        keys = _BlobUnpickler(f).load()
    except pickle.UnpicklingError:
        raise
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise pickle.UnpicklingError(
            f"a tensor storage is unreadable ({type(exc).__name__})"
        ) from None
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
        raise pickle.UnpicklingError("a tensor storage is not in torch's storage format")
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise pickle.UnpicklingError("a tensor storage is not little-endian")
    if not isinstance(pid, tuple) or keys != [pid[2]]:
        raise pickle.UnpicklingError("a tensor storage blob must hold exactly one storage")
    dtype, numel = pid[1], pid[4]
    itemsize = dtype.itemsize
    rest = memoryview(blob)[f.tell() :]
    if len(rest) < 8 or int.from_bytes(rest[:8], "little") != numel or numel < 0:
        raise pickle.UnpicklingError("a tensor storage's size does not match its header")
    if len(rest) - 8 != numel * itemsize:
        raise pickle.UnpicklingError(
            f"a tensor storage claims {numel} elements of {itemsize} bytes but holds "
            f"{len(rest) - 8} bytes"
        )
    return StorageBlob(bytes(rest[8:]), dtype)


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if (
        not isinstance(value, (tuple, list, torch.Size))
        or len(value) > MAX_DIMS
        or not all(type(v) is int and abs(v) < 2**48 for v in value)
    ):
        raise pickle.UnpicklingError(f"a tensor {what} is not up to {MAX_DIMS} ints")
    return tuple(value)


class TensorRecord:
    """A tensor of the pickle, inert: checked to lie inside its storage, its elements never
    overlapping (so it never needs more bytes than the storage holds)."""

    __slots__ = ("dtype", "offset", "shape", "storage", "stride")

    def __init__(self, storage: StorageBlob, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset = storage, offset
        self.shape, self.stride, self.dtype = torch.Size(size), stride, storage.dtype

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(
            "a BUILD opcode on a tensor (it would resize its storage): refused"
        )

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return self.shape.numel()

    @property
    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize

    def tensor(self) -> torch.Tensor:
        """The tensor, a view of its storage (made only after every check of the file)."""
        flat = self.storage.tensor()
        return flat.as_strided(tuple(self.shape), self.stride, self.offset)

    def __repr__(self) -> str:
        return f"TensorRecord({tuple(self.shape)}, {self.dtype})"


def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> TensorRecord:
    """``torch._utils._rebuild_tensor_v2`` as a checked, inert :class:`TensorRecord`."""
    # rest: requires_grad, backward_hooks[, metadata]; hooks would be callables: none allowed
    if not isinstance(storage, StorageBlob):
        raise pickle.UnpicklingError("a tensor record does not hold a storage")
    if type(offset) is not int or offset < 0 or (len(rest) > 1 and rest[1]) or len(rest) > 3:
        raise pickle.UnpicklingError("a tensor record has a bad offset or backward hooks")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or min((*size, *stride), default=0) < 0:
        raise pickle.UnpicklingError(
            f"a tensor of size {size}, stride {stride} does not fit its storage (negative, or "
            "not as many sizes as strides)"
        )
    itemsize = storage.dtype.itemsize
    dims = sorted((s, n) for n, s in zip(size, stride) if n > 1)
    span = 1  # elements covered by the dimensions of smaller stride: a larger stride must pass it
    for s, n in dims:
        if s < span:
            raise pickle.UnpicklingError(
                f"a tensor of size {size}, stride {stride} has overlapping elements"
            )
        span = s * (n - 1) + span
    extent = 0 if 0 in size else span
    if (offset + extent) * itemsize > storage.nbytes:
        raise pickle.UnpicklingError(
            f"a tensor of size {size}, stride {stride} at offset {offset} does not fit its "
            f"storage of {storage.nbytes} bytes"
        )
    return TensorRecord(storage, offset, size, stride)


def rebuild_parameter(data: Any, requires_grad: Any, hooks: Any, *state: Any) -> TensorRecord:
    """``torch._utils._rebuild_parameter(_with_state)``: the tensor record it wraps."""
    if not isinstance(data, TensorRecord) or hooks or len(state) > 1 or (state and state[0]):
        raise pickle.UnpicklingError(
            "a parameter record holds no tensor, or backward hooks or state"
        )
    return data
