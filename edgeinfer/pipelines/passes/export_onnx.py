"""export-onnx: a Hugging Face folder, a factory or a .pt2 to ONNX, validated against the source."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.exporters.onnx import OnnxExportConfig
from edgeinfer.pipelines.passes import Pass, PassContext, Takes, register_pass


def _run(source: str, output: Path, cfg: OnnxExportConfig, ctx: PassContext) -> Artifact:
    from edgeinfer.pipelines.export import export

    return export(
        source, output, cfg, force=ctx.force, trust_source=ctx.trust_source, profile=ctx.profile, progress=ctx.progress
    )


register_pass(
    Pass(
        "export-onnx",
        OnnxExportConfig,
        Takes.SOURCE,
        ModelFormat.ONNX,
        _run,
        "PyTorch / Hugging Face -> validated ONNX",
    )
)
