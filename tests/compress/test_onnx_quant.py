import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeinfer.compress.calibration import BatchReader, window_size
from edgeinfer.core.errors import ConfigError, InputError
from edgeinfer.pipelines.quantize import quantize_model

FACTORIES = Path(__file__).parents[1] / "exporters" / "factories.py"
quiet: dict = {}


def test_static_int8_keeps_lenet_accuracy_within_one_point(lenet_int8):
    art, result = lenet_int8
    base, cand = result["comparison"].rows
    assert base.metrics["accuracy"] > 0.9
    assert cand.delta is not None and abs(cand.delta) <= 0.01
    assert cand.file_size_bytes < base.file_size_bytes / 2
    ops = {n.op_type for n in onnx.load(str(art.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_quantize_step_is_recorded_with_config_and_measured_figures(lenet_int8, lenet_onnx):
    art, _ = lenet_int8
    side = json.loads(art.sidecar.read_text())
    assert [s["op"] for s in side["steps"]] == ["export", "quantize"]
    step = side["steps"][1]
    assert step["config"]["method"] == "static" and step["config"]["calibration_batches"] == 16
    from edgeinfer.devices import host_isa

    assert step["config"]["host_isa"] == host_isa()  # where the figures were measured
    assert step["metrics"]["task"] == "classification" and "speedup_vs_parent" in step["metrics"]
    assert step["parent_sha256"] == json.loads(Path(str(lenet_onnx) + ".edgeinfer.json").read_text())["sha256"]


def test_report_lists_quantized_tensors_worst_sqnr_first(lenet_int8):
    _, result = lenet_int8
    sqnr = [r["sqnr_db"] for r in result["sqnr"]]
    assert len(sqnr) >= 5 and sqnr == sorted(sqnr)
    assert all(np.isfinite(s) and s > 10 for s in sqnr)


def test_calibration_is_fed_in_windows_that_divide_the_batch_count():
    assert window_size(16, 16) == 16 and window_size(18, 16) == 9 and window_size(17, 16) == 1
    reader = BatchReader([{"x": np.full(1, i)} for i in range(6)])
    reader.set_range(2, 4)
    assert [int(reader.get_next()["x"][0]) for _ in range(2)] == [2, 3] and reader.get_next() is None


def test_fp16_keeps_io_types_and_accuracy(lenet_onnx, digits_eval, tmp_path):
    art, result = quantize_model(
        lenet_onnx, tmp_path / "fp16.onnx", method="fp16", eval_data=str(digits_eval), runs=3, **quiet
    )
    assert abs(result["comparison"].rows[1].delta) <= 0.005
    assert onnx.load(str(art.path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_int4_makes_matmulnbits_and_refuses_a_model_without_matmul(tmp_path, lenet_onnx):
    from edgeinfer.pipelines.export import export_model

    src = export_model(f"{FACTORIES}:two_outputs", tmp_path / "mm.onnx", **quiet)
    art, _ = quantize_model(src.path, tmp_path / "mm-int4.onnx", method="int4", block_size=32, **quiet)
    assert "MatMulNBits" in {n.op_type for n in onnx.load(str(art.path)).graph.node}
    with pytest.raises(InputError, match="no MatMul"):
        quantize_model(lenet_onnx, tmp_path / "l4.onnx", method="int4", **quiet)


def test_max_drop_search_reports_whether_the_target_was_met(lenet_onnx, digits_calib, digits_eval, tmp_path):
    art, result = quantize_model(
        lenet_onnx,
        tmp_path / "search.onnx",
        method="static",
        calib=str(digits_calib),
        calib_method="minmax",
        eval_data=str(digits_eval),
        max_drop=-0.5,
        runs=3,
        **quiet,
    )
    search = result["search"]
    assert search["met"] is False  # an accuracy gain of 50 points cannot be had
    assert len(search["steps"]) > 1 and all("bought" in s for s in search["steps"][1:])
    best = min(search["steps"], key=lambda s: s["drop"])
    assert search["best_drop"] == best["drop"]
    assert art.steps[-1].config["nodes_excluded"] == best["excluded"]  # the best model found is the one kept
    assert art.steps[-1].config["max_drop_search"]["met"] is False  # and labelled as missing the target


def _activation_scales(path) -> dict[str, float]:
    """The scale of every QuantizeLinear that quantizes an activation (not a weight initializer)."""
    model = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return {
        n.input[0]: float(inits[n.input[1]].ravel()[0])
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits and n.input[1] in inits
    }


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_methods_choose_other_ranges_than_minmax(lenet_onnx, digits_calib, tmp_path, method):
    ref, _ = quantize_model(
        lenet_onnx,
        tmp_path / "minmax.onnx",
        method="static",
        calib=str(digits_calib),
        calib_method="minmax",
        calib_samples=32,
        **quiet,
    )
    art, _ = quantize_model(
        lenet_onnx,
        tmp_path / f"{method}.onnx",
        method="static",
        calib=str(digits_calib),
        calib_method=method,
        calib_samples=32,
        **quiet,
    )
    assert art.steps[-1].config["calibration"] == method
    a, b = _activation_scales(ref.path), _activation_scales(art.path)
    assert a.keys() == b.keys() and len(a) >= 4
    # The calibration method really reached ONNX Runtime: it clips outliers, so some ranges differ.
    assert sum(abs(a[k] - b[k]) > 1e-6 * max(a[k], 1e-12) for k in a) >= 2


def test_exclude_by_op_type_keeps_those_nodes_float(lenet_onnx, digits_calib, tmp_path):
    art, _ = quantize_model(
        lenet_onnx,
        tmp_path / "ex.onnx",
        method="static",
        calib=str(digits_calib),
        exclude=["Gemm"],
        calib_samples=16,
        **quiet,
    )
    assert art.steps[-1].config["exclude_op_types"] == ["Gemm"]
    graph = onnx.load(str(art.path)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert gemms and convs
    # Every Gemm keeps its float weight; the Convs around them are still quantized.
    assert all(g.input[1] in floats and g.input[1] not in dequantized for g in gemms)
    assert all(c.input[1] in dequantized for c in convs)
    with pytest.raises(ConfigError, match="matches no node"):
        quantize_model(lenet_onnx, tmp_path / "ex2.onnx", method="dynamic", exclude=["NoSuchOp"], **quiet)


def test_calibration_data_that_does_not_fit_the_model_is_refused(lenet_onnx, tmp_path):
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pixels=np.zeros((4, 1, 32, 32), np.float32))
    with pytest.raises(InputError, match="missing input"):
        quantize_model(lenet_onnx, tmp_path / "q.onnx", method="static", calib=str(wrong), **quiet)
    empty = tmp_path / "empty.npz"
    np.savez(empty, input=np.zeros((0, 1, 32, 32), np.float32))
    with pytest.raises(InputError, match="empty"):
        quantize_model(lenet_onnx, tmp_path / "q.onnx", method="static", calib=str(empty), **quiet)
    shaped = tmp_path / "shaped.npz"
    np.savez(shaped, input=np.zeros((4, 1, 28, 28), np.float32))
    with pytest.raises(InputError, match="expects"):
        quantize_model(lenet_onnx, tmp_path / "q.onnx", method="static", calib=str(shaped), **quiet)
    with pytest.raises(InputError, match="needs calib"):
        quantize_model(lenet_onnx, tmp_path / "q.onnx", method="static", **quiet)


def test_already_quantized_model_and_max_drop_without_eval_data_are_refused(lenet_int8, lenet_onnx, tmp_path):
    art, _ = lenet_int8
    with pytest.raises(InputError, match="already quantized"):
        quantize_model(art.path, tmp_path / "again.onnx", method="dynamic", **quiet)
    with pytest.raises(ConfigError, match="max_drop needs eval_data"):
        quantize_model(lenet_onnx, tmp_path / "q.onnx", method="static", calib="x.npz", max_drop=0.01, **quiet)


def test_device_profile_sets_reduce_range_and_types(lenet_onnx, tmp_path):
    from edgeinfer.devices import get_profile

    art, _ = quantize_model(
        lenet_onnx, tmp_path / "laptop.onnx", method="dynamic", profile=get_profile("x86-laptop"), **quiet
    )
    assert art.steps[-1].config["reduce_range"] is True
    art, _ = quantize_model(
        lenet_onnx, tmp_path / "vnni.onnx", method="dynamic", profile=get_profile("x86-avx512-vnni"), **quiet
    )
    assert art.steps[-1].config["reduce_range"] is False


@pytest.mark.slow
def test_minilm_dynamic_int8_keeps_embeddings_and_shrinks(minilm_onnx, tmp_path):
    from edgeinfer.examples import SENTENCES

    art, result = quantize_model(
        minilm_onnx, tmp_path / "minilm-int8.onnx", method="dynamic", eval_data=str(SENTENCES), runs=3, **quiet
    )
    base, cand = result["comparison"].rows
    assert result["comparison"].task == "embedding" and result["comparison"].samples == 250
    assert cand.metrics["cosine_mean"] > 0.98 and cand.metrics["retrieval_top10"] > 0.8
    assert cand.file_size_bytes < base.file_size_bytes / 3


def test_config_first_api_quantizes_with_the_config_given(lenet_onnx, digits_calib, tmp_path):
    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.pipelines.quantize import quantize

    cfg = OnnxQuantConfig("static", calibration="percentile", per_channel=False, exclude_op_types=("Gemm",))
    art, _ = quantize(lenet_onnx, tmp_path / "cfg.onnx", cfg, calib=str(digits_calib), calib_samples=32)
    recorded = art.steps[-1].config
    assert OnnxQuantConfig.from_dict({k: recorded[k] for k in cfg.to_dict()}) == cfg
    graph = onnx.load(str(art.path)).graph
    assert "QuantizeLinear" in {n.op_type for n in graph.node}
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert all(n.input[1] in floats for n in graph.node if n.op_type == "Gemm")


def test_the_quantization_config_is_hashable_and_round_trips_its_extra_options():
    """A frozen config is a value: it hashes (so it can key a cache or a set of candidates), and
    onnxruntime's extra_options survive to_dict / from_dict (sidecars, recipes) as given."""
    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.core.errors import ConfigError

    cfg = OnnxQuantConfig("static", extra={"WeightSymmetric": True, "CalibMovingAverage": False})
    assert hash(cfg) == hash(OnnxQuantConfig.from_dict(cfg.to_dict()))
    assert OnnxQuantConfig.from_dict(cfg.to_dict()) == cfg
    assert dict(cfg.extra) == {"WeightSymmetric": True, "CalibMovingAverage": False}
    assert OnnxQuantConfig.from_dict({"method": "dynamic", "extra": {}}).extra == ()  # an older sidecar's {}
    with pytest.raises(ConfigError, match="extra"):
        OnnxQuantConfig("static", extra=(("WeightSymmetric",),))  # type: ignore[arg-type]
