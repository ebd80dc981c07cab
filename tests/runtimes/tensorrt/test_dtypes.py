"""Every TensorRT tensor type has host memory and a conversion (no TensorRT): native NumPy types
pass through, BF16/FP8/INT4/FP4/E8M0 round-trip through TensorRT's encodings."""

from __future__ import annotations

import numpy as np
import pytest

from optimize.runtimes.tensorrt.dtypes import FP4_E2M1, FP8_E4M3, TENSOR_TYPES, tensor_type

# Every member of trt.DataType on release/10.x-11.x (python/src/infer/pyFoundationalTypes.cpp).
TRT_DATA_TYPES = [
    "FLOAT",
    "HALF",
    "BF16",
    "INT8",
    "INT32",
    "INT64",
    "BOOL",
    "UINT8",
    "FP8",
    "INT4",
    "FP4",
    "E8M0",
]


def test_every_tensorrt_type_is_in_the_table():
    assert sorted(TENSOR_TYPES) == sorted(TRT_DATA_TYPES)


class _DataType:  # what a trt.DataType member looks like: an enum with a name
    def __init__(self, name):
        self.name = name


@pytest.mark.parametrize(
    "name, dtype",
    [
        ("FLOAT", np.float32),
        ("HALF", np.float16),
        ("INT8", np.int8),
        ("INT32", np.int32),
        ("INT64", np.int64),
        ("BOOL", np.bool_),
        ("UINT8", np.uint8),
    ],
)
def test_native_types_pass_through(name, dtype):
    kind = tensor_type(_DataType(name))
    values = np.arange(6).reshape(2, 3).astype(dtype)
    stored = kind.to_storage(values)
    assert stored.dtype == dtype and kind.nbytes((2, 3)) == values.nbytes
    np.testing.assert_array_equal(kind.from_storage(stored, (2, 3)), values)


def test_bf16_rounds_to_nearest_even():
    kind = TENSOR_TYPES["BF16"]
    values = np.array([1.0, -2.5, 3.14159, 1 + 2**-8, 1 + 3 * 2**-8, np.inf, np.nan], np.float32)
    stored = kind.to_storage(values)
    assert stored.dtype == np.uint16 and kind.nbytes(values.shape) == 14
    back = kind.from_storage(stored, values.shape)
    np.testing.assert_array_equal(back[:3], [1.0, -2.5, 3.140625])
    assert back[3] == 1.0 and back[4] == 1 + 4 * 2**-8  # ties go to the even mantissa
    assert np.isposinf(back[5]) and np.isnan(back[6])


def test_fp8_e4m3():
    assert np.nanmax(FP8_E4M3) == 448 and np.isnan(FP8_E4M3[0x7F]) and np.isnan(FP8_E4M3[0xFF])
    assert FP8_E4M3[1] == 2.0**-9  # the smallest subnormal
    kind = TENSOR_TYPES["FP8"]
    values = np.array([0.0, 1.0, -1.75, 3.3, 1000.0, -1000.0, np.nan], np.float32)
    back = kind.from_storage(kind.to_storage(values), values.shape)
    np.testing.assert_array_equal(back[:6], [0.0, 1.0, -1.75, 3.25, 448.0, -448.0])  # saturates
    assert np.isnan(back[6])
    every = FP8_E4M3[~np.isnan(FP8_E4M3)]
    np.testing.assert_array_equal(kind.from_storage(kind.to_storage(every), every.shape), every)


def test_int4_packs_two_per_byte_low_nibble_first():
    kind = TENSOR_TYPES["INT4"]
    values = np.array([-8, 7, 0, -1, 3], np.int8)
    stored = kind.to_storage(values)
    assert stored.tolist() == [0x78, 0xF0, 0x03] and kind.nbytes((5,)) == 3
    np.testing.assert_array_equal(kind.from_storage(stored, (5,)), values)
    assert kind.from_storage(kind.to_storage(np.array([20, -20])), (2,)).tolist() == [7, -8]


def test_fp4_e2m1():
    assert sorted(set(np.abs(FP4_E2M1).tolist())) == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    kind = TENSOR_TYPES["FP4"]
    values = np.array([0.5, -2.5, 5.0, 100.0, -0.2], np.float32)
    stored = kind.to_storage(values)
    assert len(stored) == 3 and kind.nbytes((5,)) == 3
    np.testing.assert_array_equal(kind.from_storage(stored, (5,)), [0.5, -2.0, 4.0, 6.0, 0.0])


def test_e8m0_powers_of_two():
    kind = TENSOR_TYPES["E8M0"]
    values = np.array([1.0, 0.25, 3.0, 2.0**-127, np.nan], np.float32)
    back = kind.from_storage(kind.to_storage(values), values.shape)
    np.testing.assert_array_equal(back[:4], [1.0, 0.25, 4.0, 2.0**-127])
    assert np.isnan(back[4])


def test_an_unknown_type_is_a_clear_error():
    with pytest.raises(ValueError, match="tensor type FP6 is not supported by this runner"):
        tensor_type(_DataType("FP6"))
    assert tensor_type("DataType.HALF").host == np.float16
