"""quantize-gguf: llama.cpp k-quants and legacy types (Q4_K_M, Q8_0, ...)."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.compress.gguf_quant import GgufQuantConfig
from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.pipelines.passes import Pass, PassContext, Takes, register_pass


def _run(source: str, output: Path, cfg: GgufQuantConfig, ctx: PassContext) -> Artifact:
    from edgeinfer.pipelines.llm import kquantize

    importance = (Path(cfg.calib), None) if cfg.calib else None
    return kquantize(Path(source), output, cfg, force=ctx.force, importance=importance, progress=ctx.progress)[0]


register_pass(
    Pass("quantize-gguf", GgufQuantConfig, Takes.GGUF, ModelFormat.GGUF, _run, "llama.cpp quantization of a GGUF")
)
