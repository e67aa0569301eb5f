"""The OpenVINO runner: it runs an exported model as ONNX Runtime does, reports the device and the
precision OpenVINO really chose (read back, never assumed), and refuses what it cannot do here
(a device or precision this machine lacks, a file that is not ONNX, inputs that do not fit)
unless a fallback is allowed, which is then said and recorded."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.core.errors import ConfigError, InputError, ProviderUnavailableError
from edgeinfer.runtime import Target, load

pytest.importorskip("openvino", reason="OpenVINO is in the dev extra; CI installs it")


def _digits(n: int = 8) -> np.ndarray:
    from edgeinfer.examples.digits import load_split

    _, x, _, _ = load_split()
    return np.asarray(x[:n], dtype=np.float32)


def test_openvino_runs_the_model_as_onnx_runtime_does_and_says_which_precision_it_chose(lenet_onnx):
    from edgeinfer.runtime.openvino import device_capabilities

    x = _digits()
    ort = load(lenet_onnx).run({"input": x})["output"]
    f32 = load(lenet_onnx, Target(threads=1, backend="openvino").with_options(precision="f32"))
    got = f32.run({"input": x})["output"]
    assert np.allclose(got, ort, atol=1e-3) and (got.argmax(1) == ort.argmax(1)).all()
    assert f32.report.used == ["OpenVINO:CPU (f32, 1 threads)"] and f32.report.fallbacks == []
    default = load(lenet_onnx, Target(backend="openvino"))
    chosen = default.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    assert default.precision == chosen and f"({chosen}," in default.report.used[0]
    # OpenVINO's own default on a CPU with BF16 is BF16: reported as such, not as FP32.
    assert (chosen == "bf16") == ("BF16" in device_capabilities("CPU"))
    assert [i.name for i in default.inputs] == ["input"] and default.output_names == ["output"]


def test_a_device_or_precision_openvino_lacks_here_is_refused_unless_the_fallback_is_allowed(lenet_onnx):
    from edgeinfer.runtime.openvino import PRECISIONS, device_capabilities

    with pytest.raises(ProviderUnavailableError, match="has no NPU device on this machine.*allow_fallback"):
        load(lenet_onnx, Target(backend="openvino").with_options(device="NPU"))
    runner = load(lenet_onnx, Target(backend="openvino", allow_fallback=True).with_options(device="NPU"))
    assert runner.device == "CPU" and runner.report.fallbacks == ["OpenVINO:NPU unavailable"]
    assert runner.run({"input": _digits(2)})["output"].shape == (2, 10)
    caps = device_capabilities("CPU")
    lacking = [p for p, cap in PRECISIONS.items() if cap not in caps]
    for precision in lacking:  # f16 on an x86 CPU without AMX-FP16, bf16 on one without BF16
        with pytest.raises(ProviderUnavailableError, match=f"has no {precision}"):
            load(lenet_onnx, Target(backend="openvino").with_options(precision=precision))
        said = load(lenet_onnx, Target(backend="openvino", allow_fallback=True).with_options(precision=precision))
        assert said.precision == "f32" and said.report.fallbacks == [f"{precision} unavailable"]
    assert "FP32" in caps


def test_what_is_not_an_onnx_model_or_does_not_fit_it_is_refused_in_one_line(lenet_onnx, tmp_path):
    bad = tmp_path / "random.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(InputError, match="is not a valid ONNX model"):
        load(bad, Target(backend="openvino"))
    runner = load(lenet_onnx, Target(backend="openvino"))
    with pytest.raises(InputError, match="input has dtype float64, expected float32"):
        runner.run({"input": _digits(2).astype(np.float64)})
    with pytest.raises(InputError, match="missing input"):
        runner.run({})
    with pytest.raises(InputError, match="device 'TPU' is not one of CPU, GPU, NPU"):
        load(lenet_onnx, Target(backend="openvino").with_options(device="TPU"))
    with pytest.raises(ConfigError, match="applies to GGUF"):  # a llama.cpp option, refused, not ignored
        load(lenet_onnx, Target(backend="openvino", n_ctx=512))
