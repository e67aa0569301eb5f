"""quantize-onnx: ONNX Runtime post-training quantization (dynamic, static, int4, fp16, ...)."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.compress.onnx_quant import OnnxQuantConfig
from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.pipelines.passes import Pass, PassContext, Takes, register_pass


def _run(source: str, output: Path, cfg: OnnxQuantConfig, ctx: PassContext) -> Artifact:
    from edgeinfer.pipelines.quantize import quantize

    art, _ = quantize(
        Path(source),
        output,
        cfg,
        calib=ctx.calib,
        eval_data=ctx.eval_data,
        profile=ctx.profile,
        runs=ctx.runs,
        force=ctx.force,
        progress=ctx.progress,
        compare=ctx.compare,
    )
    return art


register_pass(
    Pass(
        "quantize-onnx",
        OnnxQuantConfig,
        Takes.ONNX,
        ModelFormat.ONNX,
        _run,
        "ONNX Runtime PTQ: dynamic / static INT8, int4 weights, fp16",
    )
)
