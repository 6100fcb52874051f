"""``.npy`` members: uint8 arrays ``(H, W)`` or ``(H, W, C)``, for any number of channels.

Images with more than 4 channels (RGB + depth + normals, multi-spectral bands) have no common
image format; a dataset of them is a folder or zip of ``.npy`` files, one image each. The
header is checked before any data is read: only uint8 arrays of the channels asked for, whose
promised size the file really holds, are loaded (never pickles), so a hostile or cut-off file
costs no more memory than its own size.
"""

from __future__ import annotations

import contextlib
import math
from typing import BinaryIO

import numpy as np

__all__ = ["read_npy"]


def read_npy(fp: str | BinaryIO, channels: int) -> np.ndarray:
    """The uint8 array ``(H, W, channels)`` in ``fp`` (a path or a seekable binary file).

    An ``(H, W)`` array counts as one channel. Raises ValueError saying why the file is
    unusable: not a ``.npy`` file, another dtype (16-bit or float data would lose precision in
    the 8-bit cache), another shape or channel count, or a header that promises more bytes than
    the file holds.
    """
    with open(fp, "rb") if isinstance(fp, str) else contextlib.nullcontext(fp) as f:
        shape, dtype = _checked_header(f, channels)
        f.seek(0)
        array = np.load(f, allow_pickle=False)
    if array.shape != shape or array.dtype != dtype:  # the file changed under us
        raise ValueError(f"the array read, {array.dtype} {array.shape}, is not its header's")
    return array if array.ndim == 3 else array[:, :, None]


def _checked_header(f: BinaryIO, channels: int) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(f)  # ValueError on anything that is not a .npy file
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
    if dtype.hasobject:
        raise ValueError("the array holds Python objects; pickles are never loaded")
    if dtype != np.uint8:
        if dtype.itemsize > 1:
            raise ValueError(
                f"the array holds {dtype} values, not uint8: {8 * dtype.itemsize}-bit data "
                f"would lose precision in the 8-bit cache; convert to uint8"
            )
        raise ValueError(f"the array holds {dtype} values; convert to uint8")
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"expected an array (H, W) or (H, W, C), got shape {shape}")
    found = 1 if len(shape) == 2 else shape[2]
    if found != channels:
        raise ValueError(
            f"the array has {found} channel(s) (shape {shape}); {channels} were asked for "
            f"(data.channels)"
        )
    start = f.tell()
    end = f.seek(0, 2)
    need = math.prod(shape)  # Python ints: a lying header cannot overflow this
    if need > end - start:
        raise ValueError(
            f"its header promises {need} bytes of shape {shape}, but the file holds "
            f"{end - start}: cut off or not what it claims"
        )
    return shape, dtype
