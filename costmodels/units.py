"""Unit constants and data types. Inside the code everything is SI: bytes, seconds, FLOP/s."""
from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3
GB = 1e9
TB = 1e12
TERA = 1e12
MS = 1e-3
US = 1e-6

#: Bytes per element of each storage format. 4-bit formats pack two values per byte.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "fp4": 0.5,
}

DTYPES = tuple(DTYPE_BYTES)


def dtype_bytes(dtype: str) -> float:
    """Bytes per element.

    >>> dtype_bytes("fp8")
    1.0
    """
    return DTYPE_BYTES[dtype]
