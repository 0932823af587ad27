"""Unit constants and data types. Inside the code everything is SI: bytes, seconds, FLOP/s."""
from __future__ import annotations

import math

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


def round_up(value: float, places: int) -> float:
    """``value`` rounded up to ``places`` decimals, for a figure a limit may be set at (a latency, an upper
    estimate): a figure already on its last place stays, not one place up through float noise.

    >>> round_up(446.7301, 1), round_up(19.996, 3)
    (446.8, 19.996)
    """
    scale = 10.0**places
    return math.ceil(value * scale - 1e-6) / scale

#: Bytes of quantisation scales stored per weight element, on top of ``DTYPE_BYTES``:
#: * int4 (W4A16, AWQ/GPTQ as vLLM and TensorRT-LLM load them): groups of 128 weights share one
#:   16-bit scale and one 4-bit zero point, (16 + 4) / 128 bits per weight (AWQ paper, Lin et al.
#:   2023, group size 128; vLLM's AWQ layout: ``scales`` fp16 and ``qzeros`` packed int4 per group);
#: * fp4 (NVFP4, TensorRT-LLM's FP4 on Blackwell): blocks of 16 elements share one FP8 E4M3 scale,
#:   8 / 16 bits per weight (NVIDIA, "Introducing NVFP4", 2025; MXFP4's 8 / 32 is smaller);
#: * fp8 and int8: one scale per tensor, channel or 128 x 128 block, under 0.002 bits per weight.
SCALE_BYTES_PER_WEIGHT: dict[str, float] = {"int4": (16 + 4) / 128 / 8, "fp4": 8 / 16 / 8}


def weight_storage_bytes(dtype: str) -> float:
    """Bytes one quantised weight takes in memory, its share of the scales included.

    >>> weight_storage_bytes("bf16"), weight_storage_bytes("fp4"), round(weight_storage_bytes("int4"), 5)
    (2.0, 0.5625, 0.51953)
    """
    return DTYPE_BYTES[dtype] + SCALE_BYTES_PER_WEIGHT.get(dtype, 0.0)


def dtype_bytes(dtype: str) -> float:
    """Bytes per element.

    >>> dtype_bytes("fp8")
    1.0
    """
    return DTYPE_BYTES[dtype]
