"""llama.cpp's k-quants weighted by an importance matrix, through ggml's own quantizer.

llama-cpp-python's quantize binding cannot pass an importance matrix (llama.cpp takes it as a C++
map), but ggml exports the function `llama-quantize --imatrix` ends in,
`ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix)`, which takes a plain float
array. So the file is made in two steps: llama.cpp's quantizer (the binding) chooses every tensor's
type for the file type (the _S / _M / _L mixes, the fallbacks for rows that do not split into
blocks of 256), then every quantized tensor is quantized again from the source weights with its
importance, by the same C code and into the same layout. Each result is dequantized by gguf-py's
independent dequantizers and its importance-weighted error compared with the unweighted
quantization's before the file is written.
"""

from __future__ import annotations

import ctypes
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.compress.imatrix import Imatrix, weighted_error
from edgeinfer.core.errors import BackendError, InputError, MissingDependencyError
from edgeinfer.core.progress import QUIET, Progress

# The weighted quantizer must not do worse than the unweighted one on the error it minimises;
# more than this is a wrong layout or a wrong importance vector, not rounding.
MAX_ERROR_RATIO = 1.25
_ROWS_PER_TASK = 64


@dataclass(frozen=True)
class TensorError:
    """A quantized tensor's importance-weighted relative squared error, with and without importance."""

    name: str
    type: str
    weighted: float  # the error of the importance-aware quantization
    unweighted: float  # the error of llama.cpp's plain quantization, same type
    has_importance: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "error": self.weighted,
            "plain_error": self.unweighted,
            "importance": self.has_importance,
        }


@cache
def _ggml() -> Any:
    """ggml's quantization entry points from the library llama-cpp-python loads."""
    try:
        import llama_cpp
    except ImportError as e:
        raise MissingDependencyError("llama-cpp-python", "importance-aware GGUF quantization") from e
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    names = {"win32": ["ggml-base.dll"], "darwin": ["libggml-base.dylib"]}.get(sys.platform, ["libggml-base.so"])
    path = next((lib_dir / n for n in names if (lib_dir / n).exists()), None)
    if path is None:
        raise BackendError(f"llama-cpp-python ships no {names[0]} in {lib_dir}; reinstall llama-cpp-python")
    lib = ctypes.CDLL(str(path))
    fp = ctypes.POINTER(ctypes.c_float)
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int,
        fp,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        fp,
    ]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init.restype = None
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_row_size.restype = ctypes.c_size_t
    return lib


def quantize_rows(qtype: Any, weights: np.ndarray, importance: np.ndarray | None, threads: int = 1) -> np.ndarray:
    """Quantize float32 rows [n_rows, n_per_row] to `qtype` with ggml, weighted by `importance`
    [n_per_row] when given; returns the blocks as uint8 [n_rows, row_bytes]."""
    lib = _ggml()
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    n_rows, n_per_row = weights.shape
    row_bytes = int(lib.ggml_row_size(int(qtype), n_per_row))
    out = np.empty((n_rows, row_bytes), dtype=np.uint8)
    imp = None if importance is None else np.ascontiguousarray(importance, dtype=np.float32)
    lib.ggml_quantize_init(int(qtype))
    fp = ctypes.POINTER(ctypes.c_float)
    src, dst = weights.ctypes.data, out.ctypes.data
    imp_ptr = imp.ctypes.data_as(fp) if imp is not None else None

    def run(first: int) -> int:
        rows = min(_ROWS_PER_TASK, n_rows - first)
        # ctypes lets go of the GIL for the call, so the row groups quantize in parallel.
        return lib.ggml_quantize_chunk(
            int(qtype), ctypes.cast(src, fp), ctypes.c_void_p(dst), first * n_per_row, rows, n_per_row, imp_ptr
        )

    starts = range(0, n_rows, _ROWS_PER_TASK)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        written = sum(pool.map(run, starts))
    if written != out.nbytes:
        raise BackendError(f"ggml wrote {written} bytes for {out.nbytes} of {qtype.name} blocks")
    return out


def _floats(tensor: Any) -> np.ndarray:
    """A GGUF tensor's values as float32 [n_mat, n_rows, n_per_row]."""
    import gguf

    shape = [int(d) for d in tensor.shape]  # ggml order
    n_per_row = shape[0]
    n_rows = shape[1] if len(shape) > 1 else 1
    values = gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type)
    return np.asarray(values, dtype=np.float32).reshape(-1, n_rows, n_per_row)


def requantize(
    source: Path,
    plain: Path,
    output: Path,
    imatrix: Imatrix,
    *,
    threads: int = 0,
    progress: Progress = QUIET,
) -> list[TensorError]:
    """Write `output`: the metadata and tensor types of `plain` (llama.cpp's quantization of
    `source`), each quantized tensor's blocks made again from `source`'s weights with importance.

    Returns every quantized tensor's importance-weighted error, weighted and plain.
    """
    import gguf

    from edgeinfer.core.formats import gguf_int, gguf_string, open_gguf

    threads = threads or (os.cpu_count() or 1)
    src_reader, plain_reader = open_gguf(source), open_gguf(plain)
    src_tensors = {t.name: t for t in src_reader.tensors}
    arch = gguf_string(plain_reader, "general.architecture") or "llama"
    writer = gguf.GGUFWriter(str(output), arch=arch)
    alignment = gguf_int(plain_reader, "general.alignment")
    if alignment:
        writer.data_alignment = alignment
    for field in plain_reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        sub_type = field.types[-1] if len(field.types) > 1 else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub_type)
    for t in plain_reader.tensors:
        logical = [int(d) for d in reversed([int(d) for d in t.shape])]
        writer.add_tensor_info(t.name, logical, np.dtype(np.float32), int(t.n_bytes), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()

    errors: list[TensorError] = []
    float_types = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16}
    try:
        for i, t in enumerate(plain_reader.tensors):
            progress.advance(i + 1, len(plain_reader.tensors), t.name)
            if t.tensor_type in float_types:
                writer.write_tensor_data(np.asarray(t.data))
                continue
            original = src_tensors.get(t.name)
            if original is None or [int(d) for d in original.shape] != [int(d) for d in t.shape]:
                raise InputError(f"{plain.name}: tensor {t.name} is not in {source.name} with the same shape")
            w = _floats(original)
            n_mat, _, n_per_row = w.shape
            importance = imatrix.for_tensor(t.name, n_per_row, n_mat)
            weighing = importance if importance is not None else np.ones((n_mat, n_per_row), np.float32)
            blocks = np.stack(
                [
                    quantize_rows(t.tensor_type, w[m], None if importance is None else importance[m], threads)
                    for m in range(n_mat)
                ]
            )
            new = gguf.quants.dequantize(blocks, t.tensor_type).reshape(w.shape)
            old = _floats(t)
            weighted = sum(weighted_error(w[m], new[m], weighing[m]) for m in range(n_mat)) / n_mat
            unweighted = sum(weighted_error(w[m], old[m], weighing[m]) for m in range(n_mat)) / n_mat
            if not np.isfinite(weighted) or weighted > MAX_ERROR_RATIO * unweighted + 1e-7:
                raise BackendError(
                    f"{t.name} ({t.tensor_type.name}): the importance-aware blocks have error {weighted:.3g}, "
                    f"llama.cpp's plain ones {unweighted:.3g}; refusing to write them (a ggml layout this version "
                    "does not match?)"
                )
            errors.append(TensorError(t.name, t.tensor_type.name, weighted, unweighted, importance is not None))
            writer.write_tensor_data(blocks.reshape(np.asarray(t.data).shape))
    finally:
        writer.close()
    return errors
