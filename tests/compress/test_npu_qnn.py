"""The Qualcomm NPU path, really executed on onnxruntime-qnn's HTP simulator."""

import numpy as np
import onnx
import pytest

from edgeinfer.core.errors import ConfigError
from edgeinfer.devices import get_profile
from edgeinfer.pipelines.quantize import quantize_model

pytest.importorskip("onnxruntime_qnn", reason="pip install onnxruntime-qnn (in the dev extra)")
NPU = get_profile("snapdragon-npu")


@pytest.fixture(scope="module")
def lenet_npu(lenet_static_shapes, digits_calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("npu") / "lenet-npu.onnx"
    art, _ = quantize_model(lenet_static_shapes, out, method="static", calib=str(digits_calib), profile=NPU, runs=3)
    return art.path


def test_npu_model_runs_whole_graph_on_qnn_with_cpu_fallback_disabled(lenet_npu, lenet_static_shapes, digits_eval):
    from edgeinfer.pipelines.compare import compare_models

    report = compare_models(lenet_static_shapes, [lenet_npu], str(digits_eval), device=NPU, runs=3)
    base, npu = report.rows
    assert base.providers == ["CPUExecutionProvider"]
    assert set(npu.placement) == {"QNNExecutionProvider"}  # nothing ran on the CPU
    assert npu.delta is not None and abs(npu.delta) <= 0.01 and base.metrics["accuracy"] > 0.9
    # Timed on QNN's x86 simulator: its latency is not the NPU's, so it is never flagged SLOWER.
    import platform

    assert npu.simulated == (platform.machine() == "x86_64") and not (npu.simulated and npu.slower)


def test_compile_writes_an_ep_context_model_that_gives_the_same_outputs(lenet_npu, tmp_path):
    from edgeinfer.runtime.ort import OrtRunner, compile_ep_context

    ctx = tmp_path / "lenet_ctx.onnx"
    compile_ep_context(lenet_npu, ctx, list(NPU.providers))
    assert [n.op_type for n in onnx.load(str(ctx)).graph.node] == ["EPContext"]
    x = {"input": np.random.default_rng(0).random((8, 1, 32, 32), dtype=np.float32)}
    a = OrtRunner(lenet_npu, providers=list(NPU.providers)).run(x)["output"]
    b = OrtRunner(ctx, providers=list(NPU.providers)).run(x)["output"]
    assert np.abs(a - b).max() == 0


def test_dynamic_shape_model_is_refused_for_the_npu(lenet_onnx, digits_calib, tmp_path):
    with pytest.raises(ConfigError, match="re-export with static_shapes=True"):
        quantize_model(lenet_onnx, tmp_path / "x.onnx", method="static", calib=str(digits_calib), profile=NPU)


def test_npu_needs_static_quantization(lenet_static_shapes, tmp_path):
    with pytest.raises(ConfigError, match="use method=.static."):
        quantize_model(lenet_static_shapes, tmp_path / "x.onnx", method="dynamic", profile=NPU)


def test_json_on_the_npu_path_is_only_json(lenet_npu, digits_eval, tmp_path):
    """The QNN SDK prints a banner on C stdout when its first session starts; `--json > x.json` must parse."""
    import json
    import subprocess
    import sys

    batch = tmp_path / "b8.npz"
    with np.load(digits_eval) as data:
        np.savez(batch, input=data["input"][:8])
    proc = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            "from edgeinfer.cli import main; main()",
            "run",
            str(lenet_npu),
            "-i",
            str(batch),
            "--device",
            "snapdragon-npu",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["providers"]["used"][0] == "QNNExecutionProvider"
