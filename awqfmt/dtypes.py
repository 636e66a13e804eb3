"""safetensors dtype names <-> numpy, without torch.

bf16 has no numpy dtype: it is kept as raw uint16 words (bit-exact for copying) and widened to float32 by a
16-bit shift when values are needed.
"""

from __future__ import annotations

import numpy as np

# name -> (numpy storage dtype, item size in bytes)
STORAGE: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "F8_E4M3": np.dtype("u1"),
    "F8_E5M2": np.dtype("u1"),
}

FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def itemsize(name: str) -> int:
    return STORAGE[name].itemsize


def to_float32(values: np.ndarray, name: str) -> np.ndarray:
    """Widen a float tensor stored as `name` to float32 (exact for F16 and BF16)."""
    if name == "BF16":
        return (np.asarray(values, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(values).astype(np.float32)


def to_float64(values: np.ndarray, name: str) -> np.ndarray:
    return to_float32(values, name).astype(np.float64) if name in ("F16", "BF16") else np.asarray(values, np.float64)


def from_float32(values: np.ndarray, name: str) -> np.ndarray:
    """Narrow float32 to storage dtype `name` (round to nearest even for BF16)."""
    values = np.asarray(values, dtype=np.float32)
    if name == "BF16":
        bits = values.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        nan = np.isnan(values)
        out = rounded.astype(np.uint16)
        out[nan] = 0x7FC0
        return out
    return values.astype(STORAGE[name])


def nonfinite_mask(values: np.ndarray, name: str) -> np.ndarray:
    """True where a float value is inf or NaN, tested on the exponent bits (no conversion, no copy of the data)."""
    if name in ("F16", "BF16"):
        exp_mask = np.uint16(0x7C00 if name == "F16" else 0x7F80)
        raw = np.asarray(values).view(np.uint16)
        return (raw & exp_mask) == exp_mask
    if name == "F32":
        raw = np.asarray(values).view(np.uint32)
        return (raw & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
    return ~np.isfinite(np.asarray(values))


def nonpositive_mask(values: np.ndarray, name: str) -> np.ndarray:
    """True where a float value is <= 0 or -0 (sign bit set, or all value bits zero)."""
    if name in ("F16", "BF16"):
        raw = np.asarray(values).view(np.uint16)
        return (raw >= np.uint16(0x8000)) | (raw == 0)
    if name == "F32":
        raw = np.asarray(values).view(np.uint32)
        return (raw >= np.uint32(0x80000000)) | (raw == 0)
    return ~(np.asarray(values) > 0)
