"""Where a GGUF that failed its self-check parts from its source: tensor by tensor.

When llama.cpp's log-probs disagree with transformers', each GGUF tensor is matched with the
checkpoint tensor it came from (gguf-py's name map for the architecture, the one every converter
writes by), dequantized, and compared by permutation-invariant statistics: quantiles and the L2
norm. Converters reorder rows (the RoPE permutation of Q and K), transpose and split fused tensors,
so values are compared as multisets, not position by position; llama.cpp's own conventions are
undone first (Gemma's norms stored as 1 + w, Mamba's A as -exp(A_log)). The result names the
tensors whose values differ beyond what the file's type explains, in model order (the first is
where the outputs start to part), or says that every tensor holds its source's values, so the
difference is in the layout or in the graph llama.cpp builds for the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Relative error of the quantiles a tensor stored at a type may show against its source, beyond
# which the values are not the source's (float rounding; a quantized type's grid).
TYPE_TOLERANCE = {"F32": 1e-5, "F16": 2e-3, "BF16": 1e-2, "Q8_0": 2e-2}
QUANT_TOLERANCE = 0.1  # k-quants and the other block types: a tenth of the distribution
QUANTILES = np.array([0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999])
SHOWN = 3


@dataclass(frozen=True)
class TensorDifference:
    gguf_name: str
    source_name: str
    gguf_type: str
    relative_error: float  # of the quantiles and the norm, against the source's
    tolerance: float

    def __str__(self) -> str:
        return (
            f"{self.gguf_name} ({self.source_name}, {self.gguf_type}): values differ by {self.relative_error:.3g} "
            f"relative (at most {self.tolerance:g} expected)"
        )


def _block(name: str) -> int:
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit() else -1


def _signature(values: np.ndarray) -> np.ndarray:
    flat = values.astype(np.float64).ravel()
    return np.concatenate([np.quantile(flat, QUANTILES), [np.sqrt(np.mean(flat**2))]])


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.linalg.norm(b)), 1e-12)
    return float(np.linalg.norm(a - b) / scale)


def _undo_conventions(gguf_arch: str, gguf_name: str, values: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The GGUF tensor as the source stores it, where llama.cpp stores a function of it."""
    if gguf_arch.startswith("gemma") and gguf_name.endswith("norm.weight"):
        shifted = values - 1.0  # Gemma's RMSNorm multiplies by (1 + w); llama.cpp stores 1 + w
        if _relative(_signature(shifted), _signature(source)) < _relative(_signature(values), _signature(source)):
            return shifted
    if gguf_name.endswith("ssm_a"):
        return np.log(np.clip(-values, 1e-30, None))  # stored -exp(A_log)
    return values


def tensor_differences(gguf_path: Path, source: Path) -> tuple[list[TensorDifference], int, list[str]]:
    """(the tensors whose values differ beyond their type's tolerance, in model order; how many were
    compared; GGUF tensors with no single source tensor, such as stacked experts)."""
    import gguf
    from gguf.quants import dequantize

    from edgeinfer.exporters.gguf.checkpoint import Checkpoint

    reader = gguf.GGUFReader(str(gguf_path))
    field = reader.fields.get("general.architecture")
    arch_name = bytes(field.parts[field.data[0]]).decode() if field else ""
    arch = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name), None)
    ckpt = Checkpoint(source)
    blocks = 1 + max((_block(t.name) for t in reader.tensors), default=0)
    name_map = gguf.get_tensor_name_map(arch, blocks) if arch is not None else None
    by_gguf: dict[str, str] = {}
    for hf_name in ckpt.names():
        mapped = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias")) if name_map else None
        if mapped is not None:
            by_gguf.setdefault(mapped, hf_name)
    differences, compared, unmatched = [], 0, []
    for tensor in reader.tensors:
        hf_name = by_gguf.get(tensor.name)
        if hf_name is None:
            unmatched.append(tensor.name)
            continue
        source_values = ckpt.load(hf_name).numpy()
        type_name = tensor.tensor_type.name
        values = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        if values.size != source_values.size:
            unmatched.append(tensor.name)
            continue
        values = _undo_conventions(arch_name, tensor.name, values, source_values)
        error = _relative(_signature(values), _signature(source_values))
        tolerance = TYPE_TOLERANCE.get(type_name, QUANT_TOLERANCE)
        compared += 1
        if not error <= tolerance:  # NaN counts as different
            differences.append(TensorDifference(tensor.name, hf_name, type_name, error, tolerance))
    differences.sort(key=lambda d: _block(d.gguf_name))
    return differences, compared, unmatched


def diagnosis(gguf_path: Path, source: Path) -> str:
    """One sentence on where the GGUF parts from its source (for a failed self-check's message)."""
    try:
        differences, compared, unmatched = tensor_differences(gguf_path, source)
    except Exception as e:  # the diagnosis must never hide the self-check's own verdict
        return (
            f"the tensors could not be compared ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        )
    if compared == 0:
        return "no GGUF tensor could be matched to a checkpoint tensor by name, so the difference is not located"
    if differences:
        shown = "; ".join(str(d) for d in differences[:SHOWN])
        more = f" (and {len(differences) - SHOWN} more)" if len(differences) > SHOWN else ""
        return f"the outputs part at the tensors whose values are not the checkpoint's: {shown}{more}"
    skipped = f"; {len(unmatched)} GGUF tensor(s) with no single source tensor not compared" if unmatched else ""
    return (
        f"all {compared} matched tensors hold the checkpoint's values (up to order){skipped}: the difference is in "
        "their layout (a permutation or transposition) or in the graph llama.cpp builds for the architecture "
        "(hyperparameters: RoPE, norms, attention)"
    )
