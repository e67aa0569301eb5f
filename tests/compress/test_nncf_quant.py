"""quantize-nncf: NNCF's INT8 as a QDQ ONNX file that OpenVINO runs, calibrated on real data,
recorded in the sidecar; refused without calibration data or on a model already quantized."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.core.errors import InputError
from edgeinfer.pipelines.passes import PassContext, run_pass

pytest.importorskip("nncf", reason="NNCF is in the dev extra; CI installs it")


def test_nncf_int8_keeps_the_digits_accuracy_on_openvino_and_records_how_it_was_made(
    lenet_onnx, digits_calib, tmp_path
):
    import onnx

    from edgeinfer.core.artifact import load_artifact
    from edgeinfer.examples.digits import load_split
    from edgeinfer.runtime import Target, load

    out = tmp_path / "lenet-nncf.onnx"
    art = run_pass("quantize-nncf", str(lenet_onnx), out, {"subset_size": 64}, PassContext(calib=str(digits_calib)))
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    step = load_artifact(out).steps[-1]
    assert step.op == "quantize" and step.config["method"] == "nncf-int8" and step.config["quantize_nodes"] > 0
    assert step.config["model_type"] == "other" and step.config["calibration_batches"] == 8  # 64 samples / 8
    assert art.path == out
    _, x, _, y = load_split()
    x = np.asarray(x, dtype=np.float32)
    base = load(lenet_onnx).run({"input": x})["output"].argmax(1)
    int8 = load(out, Target(backend="openvino").with_options(precision="f32")).run({"input": x})["output"].argmax(1)
    assert (int8 == y).mean() >= (base == y).mean() - 0.02 and (int8 == base).mean() >= 0.97


def test_nncf_without_calibration_data_or_on_a_quantized_model_is_refused(lenet_onnx, lenet_int8, tmp_path):
    lenet_int8 = lenet_int8[0].path
    out = tmp_path / "x.onnx"
    with pytest.raises(InputError, match="NNCF.s INT8 needs (--)?calib"):
        run_pass("quantize-nncf", str(lenet_onnx), out, {}, PassContext())
    with pytest.raises(InputError, match="already quantized"):
        run_pass("quantize-nncf", str(lenet_int8), out, {}, PassContext(calib="unused.npz"))
    assert not out.exists()
