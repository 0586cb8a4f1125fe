"""Reader and writer of the IDX format of the MNIST distribution, gzip-compressed or raw.

Format (Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits",
http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x00 0x00 T D`` with ``T`` the
element type (``0x08`` unsigned byte, ``0x09`` signed byte, ``0x0B`` int16, ``0x0C`` int32,
``0x0D`` float32, ``0x0E`` float64) and ``D`` the number of dimensions, then ``D`` big-endian
uint32 sizes, then the elements in C order, big-endian. MNIST images are ``0x00000803``
(uint8, ``n x 28 x 28``), labels ``0x00000801`` (uint8, ``n``). Fashion-MNIST (Xiao, Rasul &
Vollgraf 2017, arXiv:1708.07747) uses the same format and file names.

A file is read as gzip when it starts with the gzip magic bytes ``1f 8b`` (RFC 1952), whatever
its name, else as raw IDX.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"

DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
"""IDX type code -> NumPy dtype (big-endian)."""

_CODES = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in DTYPES.items()}


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (by its first two bytes).

    Raises:
        ValueError: a gzip file that is truncated or corrupt (naming the file).
    """
    p = Path(path)
    raw = p.read_bytes()
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{p}: corrupt or truncated gzip file ({e})") from None


def parse_idx(buf: bytes, name: str = "<bytes>", *, ndim: int | None = None,
              dtype_code: int | None = None) -> np.ndarray:
    """The array stored in the IDX bytes ``buf`` (native byte order, read-only view when uint8).

    Args:
        buf: the (decompressed) file contents.
        name: the file's name for error messages.
        ndim, dtype_code: when given, the number of dimensions and the type code the magic
            number must declare (e.g. ``3, 0x08`` for MNIST images).

    Raises:
        ValueError: one line naming ``name`` and what was expected: a bad magic number, an
            unknown type, a header or body shorter or longer than its sizes say.
    """
    if len(buf) < 4:
        raise ValueError(f"{name}: {len(buf)} bytes, too short for an IDX header (4-byte magic number)")
    zero, code, dims = int.from_bytes(buf[:2], "big"), buf[2], buf[3]
    magic = f"0x{int.from_bytes(buf[:4], 'big'):08X}"
    if ndim is not None and dtype_code is not None:
        expected = f"0x0000{dtype_code:02X}{ndim:02X}"
    else:
        expected = f"0x0000TTDD (TT a type code in {sorted(f'0x{c:02X}' for c in DTYPES)}, DD >= 1 dimensions)"
    if zero != 0 or code not in DTYPES or dims == 0:
        raise ValueError(f"{name}: bad IDX magic number {magic}; expected {expected}")
    if (ndim is not None and dims != ndim) or (dtype_code is not None and code != dtype_code):
        raise ValueError(f"{name}: IDX magic number {magic} declares type 0x{code:02X} with {dims} "
                         f"dimension(s); expected {expected}")
    head = 4 + 4 * dims
    if len(buf) < head:
        raise ValueError(f"{name}: truncated IDX header: {len(buf)} bytes, the {dims} sizes need {head}")
    shape = tuple(int.from_bytes(buf[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    dt = DTYPES[code]
    need = head + int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if len(buf) != need:
        what = "truncated" if len(buf) < need else "trailing bytes in"
        raise ValueError(f"{name}: {what} IDX file: {len(buf)} bytes, the header's shape {shape} of "
                         f"{dt.itemsize}-byte elements needs {need}")
    arr = np.frombuffer(buf, dtype=dt, offset=head).reshape(shape)
    return arr if dt.itemsize == 1 else arr.astype(dt.newbyteorder("="))


def read_idx(path: str | Path, *, ndim: int | None = None, dtype_code: int | None = None) -> np.ndarray:
    """The array in the IDX file ``path`` (gzip or raw); see :func:`parse_idx`."""
    p = Path(path)
    return parse_idx(read_bytes(p), str(p), ndim=ndim, dtype_code=dtype_code)


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip when ``compress``, default: the name ends in ``.gz``).

    Used by tests and for exporting small data sets; the element type follows the array's dtype
    (uint8, int8, int16, int32, float32 or float64)."""
    p = Path(path)
    a = np.asarray(array)
    code = _CODES.get(a.dtype)
    if code is None or a.ndim == 0 or a.ndim > 255:
        raise ValueError(f"write_idx: array of dtype {a.dtype} and {a.ndim} dimensions; IDX holds 1-255 "
                         f"dimensions of {sorted(str(d) for d in _CODES)}")
    header = bytes([0, 0, code, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
    body = header + np.ascontiguousarray(a, dtype=DTYPES[code]).tobytes()
    compress = p.name.endswith(".gz") if compress is None else compress
    # mtime=0: the same array always gives the same bytes.
    p.write_bytes(gzip.compress(body, mtime=0) if compress else body)
    return p
