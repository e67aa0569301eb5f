"""Importance matrices: per weight column, the mean square of the activations that multiply it.

llama.cpp's quantizers weigh each column's rounding error by it, so the columns that large
activations multiply keep more precision. Collected here from a calibration text with forward
hooks on a PyTorch model, and stored in llama.cpp's own GGUF imatrix format (`<tensor>.in_sum2`,
`<tensor>.counts`, `imatrix.*` keys), so llama.cpp's tools read what edgeinfer writes and
edgeinfer reads what `llama-imatrix` writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.errors import InputError
from edgeinfer.core.progress import QUIET, Progress

SUMS, COUNTS = ".in_sum2", ".counts"


@dataclass(frozen=True)
class ImatrixEntry:
    """One weight's statistics: `sums` [n_mat, n_per_row] (squared activations summed per column;
    n_mat > 1 for a stacked expert tensor) and `counts` [n_mat] (the tokens that reached each matrix)."""

    sums: np.ndarray
    counts: np.ndarray

    def values(self) -> np.ndarray:
        """Mean squares [n_mat, n_per_row]; a matrix no token reached weighs its columns equally,
        as llama.cpp's quantizer does."""
        out = np.ones_like(self.sums, dtype=np.float32)
        seen = self.counts > 0
        out[seen] = self.sums[seen] / self.counts[seen, None]
        return out


@dataclass(frozen=True)
class Imatrix:
    """Importance statistics by GGUF tensor name, with how they were gathered."""

    entries: dict[str, ImatrixEntry]
    datasets: tuple[str, ...]
    chunk_count: int
    chunk_size: int

    def for_tensor(self, name: str, n_per_row: int, n_mat: int = 1) -> np.ndarray | None:
        """The weights for `name` quantized as n_mat matrices of rows n_per_row wide, or None when
        the matrix has no entry (that tensor is quantized unweighted, as llama.cpp does)."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        if entry.sums.shape != (n_mat, n_per_row):
            raise InputError(
                f"the importance matrix has {entry.sums.shape[0]} x {entry.sums.shape[1]} values for {name}, "
                f"which is {n_mat} x {n_per_row} in the model: it was computed for another model"
            )
        return entry.values()


def weighted_error(w: np.ndarray, wq: np.ndarray, importance: np.ndarray | None) -> float:
    """Relative squared error of quantized rows `wq` against `w` [rows, columns], each column weighted
    by its importance (None: all alike): what an importance-aware quantizer minimises."""
    imp = np.ones(w.shape[1]) if importance is None else np.asarray(importance, np.float64)
    num = float(np.einsum("nk,nk,k->", w - wq, w - wq, imp, dtype=np.float64))
    den = float(np.einsum("nk,nk,k->", w, w, imp, dtype=np.float64))
    return num / den if den > 0 else 0.0


def read_imatrix(path: Path) -> Imatrix:
    """A llama.cpp imatrix GGUF, every entry checked: paired sums and counts, float32, one count per
    matrix, finite and non-negative values."""
    from edgeinfer.core.formats import gguf_int, open_gguf_imatrix

    reader = open_gguf_imatrix(path)
    name = Path(path).name

    def bad(why: str) -> InputError:
        return InputError(f"{name}: {why}; it is not an importance matrix llama.cpp or edgeinfer wrote")

    tensors = {t.name: t for t in reader.tensors}
    entries: dict[str, ImatrixEntry] = {}
    for tname, tensor in tensors.items():
        if not tname.endswith(SUMS):
            if not tname.endswith(COUNTS):
                raise bad(f"tensor {tname} is neither {SUMS} nor {COUNTS}")
            if tname.removesuffix(COUNTS) + SUMS not in tensors:
                raise bad(f"{tname} has no {SUMS} beside it")
            continue
        base = tname.removesuffix(SUMS)
        counts_tensor = tensors.get(base + COUNTS)
        if counts_tensor is None:
            raise bad(f"{tname} has no {COUNTS} beside it")
        if tensor.tensor_type.name != "F32" or counts_tensor.tensor_type.name != "F32":
            raise bad(f"{base} is stored as {tensor.tensor_type.name}, not F32")
        shape = [int(d) for d in tensor.shape]  # ggml order: n_per_row, n_mat
        n_per_row, n_mat = shape[0], int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        counts = np.asarray(counts_tensor.data, dtype=np.float32).reshape(-1)
        if counts.size != n_mat:
            raise bad(f"{base} has {counts.size} counts for {n_mat} matrices")
        sums = np.asarray(tensor.data, dtype=np.float32).reshape(n_mat, n_per_row)
        if not (np.isfinite(sums).all() and np.isfinite(counts).all()) or (sums < 0).any() or (counts < 0).any():
            raise bad(f"{base} holds negative, NaN or infinite values")
        entries[base] = ImatrixEntry(sums.copy(), counts.copy())
    if not entries:
        raise bad("it holds no entries")
    datasets = reader.fields.get("imatrix.datasets")
    names = tuple(str(datasets.contents(i)) for i in range(len(datasets.data))) if datasets else ()
    return Imatrix(
        entries,
        names,
        gguf_int(reader, "imatrix.chunk_count") or 0,
        gguf_int(reader, "imatrix.chunk_size") or 0,
    )


def write_imatrix(imatrix: Imatrix, path: Path) -> None:
    """Write `imatrix` as llama.cpp's GGUF imatrix file (the caller makes the write atomic)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="imatrix")
    writer.kv_data[0].pop("general.architecture", None)  # llama-imatrix writes none
    writer.add_type("imatrix")
    writer.add_array("imatrix.datasets", list(imatrix.datasets))
    writer.add_uint32("imatrix.chunk_count", imatrix.chunk_count)
    writer.add_uint32("imatrix.chunk_size", imatrix.chunk_size)
    for name in sorted(imatrix.entries):
        entry = imatrix.entries[name]
        writer.add_tensor(name + SUMS, np.ascontiguousarray(entry.sums, dtype=np.float32))
        writer.add_tensor(name + COUNTS, np.ascontiguousarray(entry.counts, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def collect(
    model: Any,
    chunks: Iterable[Any],
    tensor_name: Callable[[str, Any], str | None],
    *,
    total: int = 0,
    progress: Progress = QUIET,
) -> dict[str, ImatrixEntry]:
    """Run `model` (a PyTorch module) on each chunk of token ids [1, n] and sum, for every linear
    layer that `tensor_name(module_name, module)` names, the squares of its inputs per column.

    Every token counts once, as in llama.cpp's imatrix: the statistics are means over all the
    calibration tokens, computed in float32 whatever the model's dtype.
    """
    import torch

    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}
    hooks = []

    def hook_for(name: str):
        def hook(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            sums[name] = sums[name] + (x * x).sum(0) if name in sums else (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return hook

    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            name = tensor_name(module_name, module)
            if name is not None:
                hooks.append(module.register_forward_pre_hook(hook_for(name)))
    if not hooks:
        raise InputError("no linear layer of the model maps to a GGUF tensor; it cannot be calibrated")
    try:
        with torch.inference_mode():
            for i, ids in enumerate(chunks):
                model(input_ids=ids, use_cache=False)
                progress.advance(i + 1, total, "calibration chunks")
    finally:
        for h in hooks:
            h.remove()
    return {
        name: ImatrixEntry(sums[name].numpy().astype(np.float32)[None, :], np.array([counts[name]], np.float32))
        for name in sums
    }
