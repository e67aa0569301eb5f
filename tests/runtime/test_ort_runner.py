import numpy as np
import pytest

from edgeinfer.core.errors import InputError, ProviderUnavailableError
from edgeinfer.devices import Provider, get_profile
from edgeinfer.runtime.ort import OrtRunner


def test_runner_reports_provider_and_node_placement(lenet_onnx):
    runner = OrtRunner(lenet_onnx)
    out = runner.run({"input": np.zeros((2, 1, 32, 32), np.float32)})
    assert out[runner.output_names[0]].shape == (2, 10)
    assert runner.report.used == ["CPUExecutionProvider"]
    placement = runner.report.placement
    assert set(placement) == {"CPUExecutionProvider"}
    assert placement["CPUExecutionProvider"]["ops"].get("Conv", 0) >= 1


@pytest.mark.parametrize(
    "feeds, message",
    [
        ({"image": np.zeros((1, 1, 32, 32), np.float32)}, "missing input.*input.*unknown input.*image"),
        ({"input": np.zeros((1, 1, 32, 32), np.float64)}, "dtype float64, expected float32"),
        ({"input": np.zeros((1, 32, 32), np.float32)}, "expected rank 4"),
        ({"input": np.zeros((1, 1, 28, 28), np.float32)}, r"shape \[1, 1, 28, 28\], expected"),
    ],
)
def test_wrong_inputs_name_what_the_model_expects(lenet_onnx, feeds, message):
    runner = OrtRunner(lenet_onnx)
    with pytest.raises(InputError, match=message) as e:
        runner.run(feeds)
    assert "The model expects: input float" in str(e.value)


def test_unavailable_provider_is_an_error_naming_its_package(lenet_onnx):
    with pytest.raises(ProviderUnavailableError, match="onnxruntime-gpu"):
        OrtRunner(lenet_onnx, providers=[Provider.CUDA])


def test_fallback_is_explicit_logged_and_recorded(lenet_onnx, caplog):
    with caplog.at_level("WARNING", logger="edgeinfer"):
        runner = OrtRunner(lenet_onnx, providers=list(get_profile("jetson-orin").providers), allow_fallback=True)
    assert runner.report.used == ["CPUExecutionProvider"]
    assert any("TensorrtExecutionProvider" in f for f in runner.report.fallbacks)
    said = [r.getMessage() for r in caplog.records if r.name == "edgeinfer.runtime.ort"]
    assert said and "fallback" in said[0]


@pytest.mark.parametrize("content", [b"", b"this is not a protobuf at all" * 10])
def test_corrupt_or_empty_onnx_is_a_clear_input_error(tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(InputError, match="not a valid ONNX model"):
        OrtRunner(bad)


def test_truncated_onnx_is_a_clear_input_error(tmp_path, lenet_onnx):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(lenet_onnx.read_bytes()[: lenet_onnx.stat().st_size // 2])
    with pytest.raises(InputError, match="not a valid ONNX model"):
        OrtRunner(bad)


def test_missing_model_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        OrtRunner(tmp_path / "none.onnx")
