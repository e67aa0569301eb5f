"""optimize-graph: ONNX Runtime's transformer fusions, kept only where measured faster."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.compress.graph_opt import GraphOptConfig
from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.pipelines.passes import Pass, PassContext, Takes, register_pass


def _run(source: str, output: Path, cfg: GraphOptConfig, ctx: PassContext) -> Artifact:
    from edgeinfer.pipelines.optimize_graph import optimize_graph

    return optimize_graph(Path(source), output, cfg, profile=ctx.profile, force=ctx.force, progress=ctx.progress)[0]


register_pass(
    Pass(
        "optimize-graph",
        GraphOptConfig,
        Takes.ONNX,
        ModelFormat.ONNX,
        _run,
        "transformer fusions (Attention, SkipLayerNorm, BiasGelu), kept where measured faster",
    )
)
