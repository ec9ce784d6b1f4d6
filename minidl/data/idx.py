"""The IDX file format of MNIST and Fashion-MNIST: read and write, gzip-compressed or plain.

An IDX file is a 4-byte magic number ``00 00 TT ND`` (TT the element type, ND the number of
dimensions), ND big-endian uint32 sizes, then the elements in C order, big-endian
(LeCun et al., http://yann.lecun.com/exdb/mnist/).
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

# IDX element type code -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _open(path):
    """Open ``path`` for binary reading, decompressing if its first bytes say gzip."""
    with open(path, "rb") as f:
        is_gzip = f.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
    return gzip.open(path, "rb") if is_gzip else open(path, "rb")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzip or plain; detected from its content, not its name).

    Returns a native-endian array of the stored shape, e.g. images ``(N, 28, 28)`` uint8 and
    labels ``(N,)`` uint8. Raises ValueError when the magic number, type code or payload size
    is wrong.
    """
    try:
        with _open(path) as f:
            header = f.read(4)
            if len(header) != 4 or header[:2] != b"\x00\x00":
                raise ValueError(f"{os.fspath(path)!r} is not an IDX file: magic number "
                                 f"{header.hex()!r} does not start with '0000'")
            type_code, ndim = header[2], header[3]
            if type_code not in IDX_DTYPES:
                raise ValueError(f"{os.fspath(path)!r}: unknown IDX type code 0x{type_code:02X}; "
                                 f"expected one of {[hex(c) for c in IDX_DTYPES]}")
            dims_bytes = f.read(4 * ndim)
            if len(dims_bytes) != 4 * ndim:
                raise ValueError(f"{os.fspath(path)!r}: truncated IDX header "
                                 f"({ndim} dimensions announced)")
            shape = struct.unpack(f">{ndim}I", dims_bytes)
            payload = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        # A corrupt or truncated gzip stream surfaces deep in gzip; say which file.
        raise ValueError(f"{os.fspath(path)!r}: cannot read IDX data ({err})") from err
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(payload) != expected:
        raise ValueError(f"{os.fspath(path)!r}: IDX header announces shape {shape} "
                         f"({expected} bytes of {dtype.str}) but the file holds {len(payload)} bytes")
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code; "
                         f"expected one of {sorted(str(d) for d in codes)}")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + payload)
