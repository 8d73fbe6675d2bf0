"""What crosses between the grader and the learner's kernel (autograder.kernel_shim's encode/decode), without a kernel.

Every value goes through JSON as it does on the wire: grader -> `encode` -> JSON -> `decode` in the kernel, and back.
It must come out the same value, of the same type, dtype and shape; what can't travel comes out opaque, never pickled.
"""
from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
import pytest
import torch

from autograder import kernel_shim

pytestmark = pytest.mark.unit


def wire(value):
    """encode, then JSON as the messages carry it (strict: a bare NaN would not be JSON), then decode."""
    return kernel_shim.decode(json.loads(json.dumps(kernel_shim.encode(value), allow_nan=False)))


@pytest.mark.parametrize("array", [
    np.array(2.5),                                   # 0-d stays 0-d (not a 1-element or scalar)
    np.array(7, dtype=np.int64),
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.array([[True, False]]),
    np.array([np.nan, np.inf, -np.inf, -0.0]),
    np.zeros((0, 4)),
    np.asfortranarray(np.arange(12.0).reshape(3, 4)),
], ids=["0d-float", "0d-int", "float32", "bool", "nan-inf", "empty", "fortran"])
def test_numpy_arrays_round_trip(array):
    back = wire(array)
    assert type(back) is np.ndarray and back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    if array.dtype.kind == "f":
        assert np.array_equal(np.signbit(back), np.signbit(array))  # -0.0 stays -0.0


@pytest.mark.parametrize("scalar", [np.float32(1.5), np.float64(-2.25), np.int32(3), np.bool_(True)])
def test_numpy_scalars_come_back_as_scalars_of_their_dtype(scalar):
    back = wire(scalar)
    assert type(back) is type(scalar) and back == scalar


@pytest.mark.parametrize("tensor", [
    torch.tensor(3.0),
    torch.arange(6, dtype=torch.float32).reshape(2, 3),
    torch.tensor([1.0, 2.5, -3.0078125, 1e30], dtype=torch.bfloat16),
    torch.tensor([[1, 2]], dtype=torch.int64),
    torch.tensor([float("nan"), float("inf")], dtype=torch.float64),
], ids=["0d", "float32", "bfloat16", "int64", "nan-inf"])
def test_tensors_round_trip_with_their_dtype(tensor):
    back = wire(tensor)
    assert isinstance(back, torch.Tensor) and back.dtype == tensor.dtype and back.shape == tensor.shape
    assert torch.equal(back.nan_to_num(), tensor.nan_to_num()) and torch.equal(back.isnan(), tensor.isnan())
    assert not back.requires_grad


def test_requires_grad_travels_and_the_graph_does_not():
    leaf = torch.ones(2, requires_grad=True)
    back = wire(leaf * 2)
    assert back.requires_grad and back.grad_fn is None and back.is_leaf
    assert not wire(leaf.detach()).requires_grad


def test_nested_tuples_lists_and_dicts_keep_their_kinds():
    value = {"out": (np.arange(3.0), [1, 2.5, None, True, "s"]), "inner": {"t": (torch.zeros(2),), "empty": ()},
             "list": [(1, 2), {"k": -1}]}
    back = wire(value)
    assert set(back) == {"out", "inner", "list"}
    assert type(back["out"]) is tuple and type(back["out"][1]) is list
    np.testing.assert_array_equal(back["out"][0], value["out"][0])
    assert back["out"][1] == [1, 2.5, None, True, "s"] and type(back["out"][1][3]) is bool
    assert type(back["inner"]["t"]) is tuple and torch.equal(back["inner"]["t"][0], torch.zeros(2))
    assert back["inner"]["empty"] == () and back["list"] == [(1, 2), {"k": -1}]


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), 0.1, -0.0, 10**30, 1e-310])
def test_python_floats_and_ints_round_trip(number):
    back = wire(number)
    assert type(back) is type(number) and back == number and math.copysign(1, back) == math.copysign(1, number)


def test_nan_travels_as_valid_json():
    encoded = kernel_shim.encode([float("nan"), (float("nan"),)])
    json.dumps(encoded, allow_nan=False)  # no bare NaN on the wire
    back = wire([float("nan"), (float("nan"),)])
    assert math.isnan(back[0]) and math.isnan(back[1][0])


class Module:
    pass


@pytest.mark.parametrize("value, opaque", [
    (Module(), "Module"),
    (np.array([Module()], dtype=object), "numpy array of Python objects"),
    ({1: "int keys"}, "dict"),
    ({1, 2}, "set"),
    (lambda x: x, "function"),
])
def test_what_cannot_travel_comes_back_opaque(value, opaque):
    assert wire(value) == {"__opaque__": opaque}


def test_deep_nesting_is_cut_off():
    value = [1]
    for _ in range(12):
        value = [value]
    back = wire(value)
    for _ in range(9):
        back = back[0]
    assert back == {"__opaque__": "nested too deeply"}


def test_decode_never_unpickles():
    buffer = io.BytesIO()
    np.save(buffer, np.array([Module()], dtype=object), allow_pickle=True)
    crafted = {"__ndarray__": base64.b64encode(buffer.getvalue()).decode("ascii")}
    with pytest.raises(ValueError, match="allow_pickle"):
        kernel_shim.decode(crafted)
