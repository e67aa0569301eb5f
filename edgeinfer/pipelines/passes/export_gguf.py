"""export-gguf: a Hugging Face causal LM folder to GGUF, self-checked in llama.cpp."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.exporters.gguf import GgufExportConfig
from edgeinfer.pipelines.passes import Pass, PassContext, Takes, register_pass


def _run(source: str, output: Path, cfg: GgufExportConfig, ctx: PassContext) -> Artifact:
    from edgeinfer.pipelines.export_gguf import export_gguf

    return export_gguf(source, output, cfg, force=ctx.force, progress=ctx.progress)


register_pass(
    Pass(
        "export-gguf",
        GgufExportConfig,
        Takes.HF_CAUSAL_LM,
        ModelFormat.GGUF,
        _run,
        "Hugging Face causal LM -> GGUF, parity-checked against transformers",
    )
)
