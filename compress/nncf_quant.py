"""INT8 post-training quantization with NNCF, the quantizer made for OpenVINO: its ONNX backend
writes a QDQ graph that OpenVINO compiles into INT8 kernels (VNNI, AMX) and that stays an .onnx
file, so every other part of edgeinfer (sidecars, compare, bundles) reads it as it is.

NNCF's documented recipe for transformers (`model_type=TRANSFORMER`: SmoothQuant, attention
kept as NNCF places it) is taken for models that have attention; other models use its defaults.
NNCF would send usage telemetry when imported; edgeinfer turns it off before the import.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import BackendError, ConfigError, MissingDependencyError
from edgeinfer.core.stdio import quiet_native

log = logging.getLogger(__name__)


class NncfPreset(StrEnum):
    PERFORMANCE = "performance"  # symmetric activations and weights
    MIXED = "mixed"  # asymmetric activations, symmetric weights: NNCF's choice for transformers


class NncfModelType(StrEnum):
    AUTO = "auto"  # transformer when the graph has attention (MatMul between activations)
    TRANSFORMER = "transformer"
    OTHER = "other"


@dataclass(frozen=True)
class NncfQuantConfig(PassConfig):
    """How NNCF quantizes an ONNX model to INT8 (its ONNX backend; the result runs on OpenVINO).

    Args:
        preset: performance (symmetric) or mixed (asymmetric activations); None: NNCF's default
            for the model type.
        model_type: auto, transformer (NNCF's transformer recipe) or other.
        subset_size: calibration samples NNCF takes from the data (it uses at most this many).
        fast_bias_correction: NNCF's bias correction after quantizing (its default: on).
        exclude_nodes: node names kept in float.
    """

    what = "NNCF quantization config"

    preset: NncfPreset | None = None
    model_type: NncfModelType = NncfModelType.AUTO
    subset_size: int = 300
    fast_bias_correction: bool = True
    exclude_nodes: tuple[str, ...] = ()

    def check(self) -> None:
        if not 1 <= self.subset_size <= 100_000:
            raise ConfigError(f"{self.what} field subset_size is {self.subset_size}; choose 1 ... 100000")


def _nncf():
    os.environ.setdefault("NNCF_CI", "1")  # NNCF's switch that stubs its telemetry out
    try:
        import nncf
    except ImportError as e:
        raise MissingDependencyError("nncf", "INT8 quantization for OpenVINO") from e
    logging.getLogger("nncf").setLevel(logging.ERROR)  # progress bars and tips are not the user's
    return nncf


def has_attention(graph: Any) -> bool:
    """A MatMul of two activations (no initializer): attention scores, the mark of a transformer."""
    weights = {t.name for t in graph.graph.initializer}
    consts = {n.output[0] for n in graph.graph.node if n.op_type == "Constant"}
    return any(
        n.op_type == "MatMul" and not any(i in weights or i in consts for i in n.input) for n in graph.graph.node
    )


def quantize_nncf(
    model: Path, output: Path, cfg: NncfQuantConfig, batches: Sequence[dict[str, np.ndarray]]
) -> dict[str, Any]:
    """Write `model` quantized to INT8 by NNCF as a QDQ ONNX file `output`, calibrated on
    `batches` (input dicts, one a batch); returns the facts a sidecar records."""
    import onnx

    from edgeinfer.core.formats import load_onnx

    nncf = _nncf()
    if not batches:
        raise ConfigError("NNCF quantization needs calibration data (--calib)")
    graph = load_onnx(Path(model), load_external_data=True)
    transformer = (
        has_attention(graph) if cfg.model_type is NncfModelType.AUTO else cfg.model_type is NncfModelType.TRANSFORMER
    )
    names = {i.name for i in graph.graph.input}
    samples = [{k: v for k, v in b.items() if k in names} for b in batches]
    kwargs: dict[str, Any] = {
        "subset_size": cfg.subset_size,
        "fast_bias_correction": cfg.fast_bias_correction,
    }
    if transformer:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if cfg.preset is not None:
        kwargs["preset"] = nncf.QuantizationPreset(cfg.preset.value)
    if cfg.exclude_nodes:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=list(cfg.exclude_nodes))
    try:
        # NNCF draws its own progress bars on stdout (`--json` must stay JSON); edgeinfer's progress
        # says what runs.
        with quiet_native(), contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(graph, nncf.Dataset(samples), **kwargs)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(f"NNCF could not quantize {Path(model).name}: {msg[:300]}") from e
    onnx.save(quantized, str(output))
    qdq = sum(1 for n in quantized.graph.node if n.op_type == "QuantizeLinear")
    return {
        "quantizer": f"nncf {nncf.__version__}",
        "model_type": "transformer" if transformer else "other",
        "calibration_batches": len(samples),
        "quantize_nodes": qdq,
    }
