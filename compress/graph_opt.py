"""Offline graph optimization of transformer ONNX models with ONNX Runtime's transformer optimizer:
Attention, SkipLayerNormalization, BiasGelu and EmbedLayerNormalization fusions.

Fusing is not always faster: on a 2-core AMD EPYC a fused Attention (and QAttention after INT8)
ran slower than ONNX Runtime's own session-level fusions at batch 16 x 128 and faster at batch 1
x 32 (docs/transformer-speed.md). So the pipeline measures the variants here on the target shape
and keeps the fastest; this module only builds them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import ConfigError, UnsupportedError
from edgeinfer.core.stdio import quiet_native

log = logging.getLogger(__name__)

# Hugging Face model_type -> the ORT optimizer's model type whose fusion patterns match its graph.
ORT_MODEL_TYPES = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "distilbert": "bert",
    "electra": "bert",
    "mpnet": "bert",
    "vit": "vit",
    "gpt2": "gpt2",
}


class Fusions(StrEnum):
    AUTO = "auto"  # measure the variants below on the target shape, keep the fastest
    ALL = "all"  # every fusion the optimizer finds
    NO_ATTENTION = "no-attention"  # LayerNorm / GELU fusions, attention left to the session
    NONE = "none"  # the input graph (ONNX Runtime still fuses at session creation)


@dataclass(frozen=True)
class GraphOptConfig(PassConfig):
    """How to optimize a transformer graph.

    Args:
        fusions: auto (measure all / no-attention / none on the target shape, keep the fastest),
            all, no-attention or none.
        batch, sequence: the target shape that `auto` measures on.
        runs: interleaved timing runs per variant for `auto`.
        num_heads, hidden_size: attention heads and hidden size (0: read from the model's config.json).
    """

    fusions: Fusions = Fusions.AUTO
    batch: int = 1
    sequence: int = 128
    runs: int = 20
    num_heads: int = 0
    hidden_size: int = 0

    what: ClassVar[str] = "graph optimization config"

    def check(self) -> None:
        if not (1 <= self.batch <= 4096 and 1 <= self.sequence <= 1 << 16):
            raise ConfigError(f"batch {self.batch} x sequence {self.sequence} is not a shape to measure on")
        if not 3 <= self.runs <= 10000:
            raise ConfigError(f"runs must be from 3 to 10000, got {self.runs}")
        if self.num_heads < 0 or self.hidden_size < 0:
            raise ConfigError("num_heads and hidden_size must not be negative (0: from config.json)")


def ort_model_type(hf_model_type: str | None) -> str:
    """The optimizer's model type for a Hugging Face model_type; unsupported families are refused."""
    found = ORT_MODEL_TYPES.get(str(hf_model_type))
    if found is None:
        raise UnsupportedError(
            f"graph fusions are known for {', '.join(sorted(ORT_MODEL_TYPES))} models, not {hf_model_type!r}; "
            "ONNX Runtime's session-level optimizations still apply when the model loads"
        )
    return found


def fuse(
    source: Path, output: Path, model_type: str, num_heads: int, hidden_size: int, attention: bool
) -> dict[str, int]:
    """Write `source` with the optimizer's fusions (attention fusion only when `attention`) to
    `output`; returns how many of each fused operator the graph now holds."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions(model_type)
    options.enable_attention = attention
    options.enable_gelu_approximation = False  # exact GELU: the fusion must not change the numbers
    with quiet_native():
        model = optimize_model(
            str(source),
            model_type=model_type,
            num_heads=num_heads,
            hidden_size=hidden_size,
            optimization_options=options,
            opt_level=0,  # fusions only: the graph stays portable across execution providers
        )
        model.save_model_to_file(str(output), use_external_data_format=False)
    return {op: n for op, n in model.get_fused_operator_statistics().items() if n}
