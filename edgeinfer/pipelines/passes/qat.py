"""qat: quantization-aware training of a factory's model, exported as an INT8 QDQ ONNX model."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.core.errors import ConfigError
from edgeinfer.pipelines.passes import Pass, PassContext, Takes, register_pass
from edgeinfer.pipelines.train import QatTraining


def _run(source: str, output: Path, cfg: QatTraining, ctx: PassContext) -> Artifact:
    from edgeinfer.pipelines.train import qat

    if not ctx.train_data:
        raise ConfigError("the qat pass needs training data (train_data)")
    return qat(source, output, ctx.train_data, cfg, runs=ctx.runs, force=ctx.force, progress=ctx.progress)["artifact"]


register_pass(
    Pass("qat", QatTraining, Takes.FACTORY, ModelFormat.ONNX, _run, "quantization-aware training -> INT8 ONNX")
)
