"""distill: a student factory's model trained on a teacher's soft targets, exported to ONNX."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.core.errors import ConfigError
from edgeinfer.pipelines.passes import Pass, PassContext, Takes, register_pass
from edgeinfer.pipelines.train import DistillTraining


def _run(source: str, output: Path, cfg: DistillTraining, ctx: PassContext) -> Artifact:
    from edgeinfer.pipelines.train import distill

    if not ctx.train_data:
        raise ConfigError("the distill pass needs training data (train_data)")
    return distill(source, output, ctx.train_data, cfg, runs=ctx.runs, force=ctx.force, progress=ctx.progress)[
        "artifact"
    ]


register_pass(Pass("distill", DistillTraining, Takes.FACTORY, ModelFormat.ONNX, _run, "knowledge distillation -> ONNX"))
