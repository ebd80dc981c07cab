"""Every TensorRT tensor type as host memory: the NumPy type a caller reads and writes, and how
its values become the bytes TensorRT reads (and back).

`trt.nptype` knows FLOAT, HALF, INT8, INT32, INT64, BOOL and UINT8 only; BF16, FP8, INT4, FP4 and
E8M0 tensors have no NumPy type, so NVIDIA's samples fall back to a byte buffer. Here they are
byte buffers too, with the conversion done in NumPy: callers pass and get float32 (int8 for
INT4), and the staging buffers hold TensorRT's own encoding. Pure: keyed by the DataType's name,
tested without TensorRT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorType:
    name: str  # trt.DataType member name
    host: np.dtype  # what the caller passes and gets
    storage: np.dtype  # what a staging buffer holds per stored unit
    per_unit: int = 1  # values per storage unit (2 for packed 4-bit types)
    encode: Callable[[np.ndarray], np.ndarray] | None = None  # host values -> storage units
    decode: Callable[[np.ndarray], np.ndarray] | None = None  # storage units -> host values

    def nbytes(self, shape: tuple[int, ...]) -> int:
        count = int(np.prod(shape, dtype=np.int64))
        return -(-count // self.per_unit) * self.storage.itemsize

    def to_storage(self, values: np.ndarray) -> np.ndarray:
        """The bytes TensorRT reads for these values, as a flat array of storage units."""
        values = np.asarray(values, dtype=self.host).reshape(-1)
        return values if self.encode is None else self.encode(values)

    def from_storage(self, units: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The values of `shape` that these storage units hold."""
        count = int(np.prod(shape, dtype=np.int64))
        values = units if self.decode is None else self.decode(units)
        return np.asarray(values[:count], dtype=self.host).reshape(shape)


# -- bfloat16: the upper half of a float32, rounded to nearest even ---------------------------------
def _bf16_encode(values: np.ndarray) -> np.ndarray:
    bits = values.astype(np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    out = (rounded >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(values)
    out[nan] = np.uint16(0x7FC0)
    return out


def _bf16_decode(units: np.ndarray) -> np.ndarray:
    return (units.astype(np.uint32) << np.uint32(16)).view(np.float32)


# -- small float formats by table: every code's value, encoding = the nearest representable value --
def _float_table(exponent_bits: int, mantissa_bits: int, bias: int, nan_codes: set[int]) -> np.ndarray:
    """float32 value of each code of a sign/exponent/mantissa format without infinities."""
    width = 1 + exponent_bits + mantissa_bits
    values = np.empty(1 << width, dtype=np.float32)
    for code in range(1 << width):
        sign = -1.0 if code >> (width - 1) else 1.0
        exponent = (code >> mantissa_bits) & ((1 << exponent_bits) - 1)
        mantissa = code & ((1 << mantissa_bits) - 1)
        if code in nan_codes:
            values[code] = np.nan
        elif exponent == 0:  # subnormal
            values[code] = sign * mantissa / (1 << mantissa_bits) * 2.0 ** (1 - bias)
        else:
            values[code] = sign * (1 + mantissa / (1 << mantissa_bits)) * 2.0 ** (exponent - bias)
    return values


FP8_E4M3 = _float_table(4, 3, 7, {0x7F, 0xFF})  # E4M3FN: no infinities, S.1111.111 is NaN
FP4_E2M1 = _float_table(2, 1, 1, set())  # E2M1: ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}, no NaN (saturates)


def _nearest_codes(table: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Encoder to the nearest finite code (ties to the even code), saturating at the largest."""
    finite = np.flatnonzero(~np.isnan(table))
    order = finite[np.argsort(table[finite], kind="stable")]
    ordered = table[order]
    nan_code = np.flatnonzero(np.isnan(table))

    def encode(values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float32)
        right = np.clip(np.searchsorted(ordered, values), 1, len(ordered) - 1)
        left = right - 1
        take_left = (values - ordered[left]) < (ordered[right] - values)
        tie = (values - ordered[left]) == (ordered[right] - values)
        take_left |= tie & (order[left] % 2 == 0)
        codes = np.where(take_left, order[left], order[right]).astype(np.uint8)
        codes[values == 0] = 0
        if len(nan_code):
            codes[np.isnan(values)] = nan_code[0]
        return codes

    return encode


def _pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """Two 4-bit codes per byte, the first in the low nibble (ONNX's and TensorRT's order)."""
    codes = codes.astype(np.uint8) & np.uint8(0x0F)
    if len(codes) % 2:
        codes = np.append(codes, np.uint8(0))
    return (codes[0::2] | (codes[1::2] << np.uint8(4))).astype(np.uint8)


def _unpack_nibbles(units: np.ndarray) -> np.ndarray:
    out = np.empty(len(units) * 2, dtype=np.uint8)
    out[0::2] = units & np.uint8(0x0F)
    out[1::2] = units >> np.uint8(4)
    return out


def _int4_encode(values: np.ndarray) -> np.ndarray:
    return _pack_nibbles(np.clip(values, -8, 7).astype(np.int8).view(np.uint8))


def _int4_decode(units: np.ndarray) -> np.ndarray:
    nibbles = _unpack_nibbles(units).astype(np.int8)
    return np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8)


_fp8_encode = _nearest_codes(FP8_E4M3)
_fp4_encode = _nearest_codes(FP4_E2M1)


def _e8m0_encode(values: np.ndarray) -> np.ndarray:
    """Exponent only: 2**(code - 127), code 255 is NaN; values round to the nearest power of two."""
    with np.errstate(divide="ignore", invalid="ignore"):
        exponents = np.rint(np.log2(np.abs(values.astype(np.float64))))
    codes = np.clip(exponents + 127, 0, 254)
    codes = np.where(np.isfinite(codes), codes, 0).astype(np.uint8)
    codes[np.isnan(values)] = 255
    return codes


def _e8m0_decode(units: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # code 255 (2**128) is NaN, set next
        values = np.exp2(units.astype(np.float32) - 127)
    values[units == 255] = np.nan
    return values


def _native(name: str, dtype) -> TensorType:
    return TensorType(name, np.dtype(dtype), np.dtype(dtype))


TENSOR_TYPES: dict[str, TensorType] = {
    "FLOAT": _native("FLOAT", np.float32),
    "HALF": _native("HALF", np.float16),
    "INT8": _native("INT8", np.int8),
    "INT32": _native("INT32", np.int32),
    "INT64": _native("INT64", np.int64),
    "BOOL": _native("BOOL", np.bool_),
    "UINT8": _native("UINT8", np.uint8),
    "BF16": TensorType("BF16", np.dtype(np.float32), np.dtype(np.uint16), 1, _bf16_encode, _bf16_decode),
    "FP8": TensorType("FP8", np.dtype(np.float32), np.dtype(np.uint8), 1, _fp8_encode, FP8_E4M3.__getitem__),
    "INT4": TensorType("INT4", np.dtype(np.int8), np.dtype(np.uint8), 2, _int4_encode, _int4_decode),
    "FP4": TensorType(
        "FP4",
        np.dtype(np.float32),
        np.dtype(np.uint8),
        2,
        lambda v: _pack_nibbles(_fp4_encode(v)),
        lambda u: FP4_E2M1[_unpack_nibbles(u)],
    ),
    "E8M0": TensorType("E8M0", np.dtype(np.float32), np.dtype(np.uint8), 1, _e8m0_encode, _e8m0_decode),
}


def tensor_type(data_type) -> TensorType:
    """The TensorType of a trt.DataType member (or its name); a clear error for a type added
    after this table was written."""
    name = getattr(data_type, "name", None) or str(data_type).rsplit(".", 1)[-1]
    if name not in TENSOR_TYPES:
        raise ValueError(
            f"TensorRT tensor type {name} is not supported by this runner (known: {', '.join(TENSOR_TYPES)})"
        )
    return TENSOR_TYPES[name]
