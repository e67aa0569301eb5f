"""The input check every tensor runner shares: names, dtypes and fixed axes against the model's
inputs, all problems in one line that says what the model expects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeinfer.core.errors import InputError

# ONNX tensor types (as ONNX Runtime names them) and the numpy dtype a feed must have.
DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def describe(specs: Sequence[Any]) -> str:
    """Inputs as `name type [dims]`, comma-separated."""
    return ", ".join(f"{i.name} {i.type.removeprefix('tensor(').rstrip(')')} {list(i.shape)}" for i in specs)


def check_feeds(specs: Sequence[Any], feeds: dict[str, np.ndarray], model: str) -> dict[str, np.ndarray]:
    """`feeds` as arrays when they fit the inputs `specs` (objects with name, type, shape), else
    InputError listing every problem and the inputs `model` expects."""
    expected = {i.name: i for i in specs}
    problems = []
    missing = [n for n in expected if n not in feeds]
    extra = [n for n in feeds if n not in expected]
    if missing:
        problems.append(f"missing input(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unknown input(s) {', '.join(extra)}")
    out = {}
    for name, spec in expected.items():
        if name not in feeds:
            continue
        arr = np.asarray(feeds[name])
        want = DTYPES.get(spec.type)
        if want is not None and arr.dtype != want:
            problems.append(f"{name} has dtype {arr.dtype}, expected {np.dtype(want).name}")
        if len(arr.shape) != len(spec.shape):
            problems.append(f"{name} has shape {list(arr.shape)}, expected rank {len(spec.shape)} {list(spec.shape)}")
        else:
            for axis, (got, dim) in enumerate(zip(arr.shape, spec.shape)):
                if isinstance(dim, int) and dim != got:
                    problems.append(f"{name} has shape {list(arr.shape)}, expected {list(spec.shape)} (axis {axis})")
                    break
        out[name] = arr
    if problems:
        raise InputError(f"inputs do not fit {model}: {'; '.join(problems)}. The model expects: {describe(specs)}")
    return out
