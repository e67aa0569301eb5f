"""The ONNX quantization registry: every method file registers itself, every config round-trips
through a plain dict, and a bad config fails when it is made, naming the valid choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeinfer.compress.onnx_quant import OnnxQuantConfig, methods, register_method
from edgeinfer.core.errors import ConfigError

METHOD_FILES = Path(__file__).parents[2] / "compress" / "onnx_methods"


def test_every_method_file_registers_one_method_and_every_method_is_tested():
    registered = methods()
    files = sorted(p.stem for p in METHOD_FILES.glob("*.py") if p.stem != "__init__")
    assert sorted(registered) == files  # one file, one method, named alike
    tests = (Path(__file__).parent / "test_onnx_quant.py").read_text()
    untested = [m for m in registered if f'method="{m}"' not in tests]
    assert not untested, f"methods without a test in test_onnx_quant.py: {untested}"


@pytest.mark.parametrize("name", sorted(methods()))
def test_configs_round_trip_through_a_plain_dict(name):
    import json

    cfg = OnnxQuantConfig(name, calibration="entropy", exclude_nodes=("a",), block_size=32)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert OnnxQuantConfig.from_dict(data) == cfg


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(method="int3"), "valid: dynamic, fp16, int4, static"),
        (dict(method="static", calibration="median"), "valid: minmax, entropy, percentile"),
        (dict(method="int4", block_size=48), "power of two"),
        (dict(method="dynamic", weight_type="int7"), "valid: int8, uint8"),
    ],
)
def test_a_bad_config_fails_when_made(bad, message):
    with pytest.raises(ConfigError, match=message):
        OnnxQuantConfig(**bad)


def test_two_methods_cannot_share_a_name():
    with pytest.raises(RuntimeError, match="two ONNX quantization methods"):
        register_method("dynamic", precision="int8")(lambda job: {})
