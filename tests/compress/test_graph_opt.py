"""optimize-graph on real MiniLM: fusions applied and recorded, every variant checked against the
input graph, a fusion that changes the numbers refused, and only faster variants kept."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgeinfer.compress.graph_opt import Fusions, GraphOptConfig, ort_model_type
from edgeinfer.core.errors import InputError, UnsupportedError, ValidationError
from edgeinfer.pipelines.optimize_graph import optimize_graph
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_bert_exports_through_torchscript_and_says_why(minilm_onnx):
    config = json.loads(minilm_onnx.with_name(minilm_onnx.name + ".edgeinfer.json").read_text())["steps"][0]["config"]
    assert config["exporter"] == "auto" and config["exporter_used"] == "torchscript"
    assert config["exporter_choice"].startswith("TorchScript first: ONNX Runtime runs the TorchScript graph")


def test_all_fusions_are_applied_checked_and_recorded(minilm_onnx, tmp_path):
    art, report = optimize_graph(minilm_onnx, tmp_path / "fused.onnx", GraphOptConfig(Fusions.ALL))
    assert report.chosen == "all" and report.fused["Attention"] == 6 and report.fused["SkipLayerNormalization"] == 12
    assert {"Attention", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization"} <= _ops(art.path)
    assert report.parity["all"]["min_cosine"] > 0.9999
    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.pipelines.quantize import quantize

    # Dynamic INT8 after the fusions (shape inference cannot see through the contrib ops).
    q, _ = quantize(art.path, tmp_path / "fused-int8.onnx", OnnxQuantConfig("dynamic"))
    assert {"QAttention", "DynamicQuantizeMatMul"} & _ops(q.path)
    step = art.steps[-1]
    assert step.op == "optimize-graph" and step.config["applied"] == "all" and step.metrics["fused"]["Attention"] == 6
    assert (
        step.parent_sha256
        == json.loads(minilm_onnx.with_name(minilm_onnx.name + ".edgeinfer.json").read_text())["sha256"]
    )


def test_auto_times_every_variant_and_keeps_a_fusion_only_when_faster(minilm_onnx, tmp_path, capsys):
    code, out, err = run_cli(
        capsys, "optimize-graph", minilm_onnx, "-o", tmp_path / "auto.onnx", "--batch", "1", "--sequence", "16",
        "--runs", "5", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert set(report["timings_ms"]) == {"none", "no-attention", "all"}
    if report["chosen"] == "none":
        assert report["fused"] == {} and _ops(tmp_path / "auto.onnx") == _ops(minilm_onnx)
    else:  # kept only because its whole 95% interval was faster than the input graph
        assert report["speedup_ci95"][0] > 1.0 and report["fused"]


def test_a_fusion_that_changes_the_numbers_is_refused(minilm_onnx, tmp_path, monkeypatch):
    import edgeinfer.pipelines.optimize_graph as pipeline

    def wrong_fuse(source, output, *args, **kwargs):
        model = onnx.load(str(source))
        weight = next(t for t in model.graph.initializer if len(t.dims) == 2 and t.dims[0] == 384)
        values = onnx.numpy_helper.to_array(weight) * 1.5
        weight.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), weight.name))
        onnx.save(model, str(output))
        return {"Attention": 6}

    monkeypatch.setattr(pipeline, "fuse", wrong_fuse)
    with pytest.raises(ValidationError, match="does not match the input graph"):
        optimize_graph(minilm_onnx, tmp_path / "bad.onnx", GraphOptConfig(Fusions.ALL))
    assert not (tmp_path / "bad.onnx").exists()


def test_inputs_it_cannot_fuse_are_refused(lenet_onnx, lenet_int8, tmp_path):
    with pytest.raises(InputError, match="records no Hugging Face model type"):
        optimize_graph(lenet_onnx, tmp_path / "x.onnx", GraphOptConfig(Fusions.ALL))
    with pytest.raises(InputError, match="is quantized; optimize the float graph, then quantize it"):
        optimize_graph(lenet_int8[0].path, tmp_path / "x.onnx", GraphOptConfig(Fusions.ALL))
    with pytest.raises(UnsupportedError, match="not 'llama'"):
        ort_model_type("llama")
    assert not (tmp_path / "x.onnx").exists()
