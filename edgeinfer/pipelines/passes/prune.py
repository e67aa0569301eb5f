"""prune: structured (channels removed, Torch-Pruning), unstructured or 2:4 pruning of a factory's
model, fine-tuned on ctx.train_data, exported to ONNX and compared with the unpruned model."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.core.errors import ConfigError
from edgeinfer.pipelines.passes import Pass, PassContext, Takes, register_pass
from edgeinfer.pipelines.train import PruneTraining


def _run(source: str, output: Path, cfg: PruneTraining, ctx: PassContext) -> Artifact:
    from edgeinfer.pipelines.train import prune

    if not ctx.train_data:
        raise ConfigError("the prune pass needs training data (train_data)")
    return prune(source, output, ctx.train_data, cfg, runs=ctx.runs, force=ctx.force, progress=ctx.progress)["artifact"]


register_pass(Pass("prune", PruneTraining, Takes.FACTORY, ModelFormat.ONNX, _run, "pruning + fine-tuning -> ONNX"))
