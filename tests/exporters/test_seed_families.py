"""The seed families that come as PyTorch code: AlexNet-, VGG- and ResNet-style CNNs and RNN / LSTM /
GRU sequence classifiers export from factories, validated on a second shape (the recurrent ones at
another sequence length), run in ONNX Runtime, are quantized and compared with their baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow
FACTORIES = Path(__file__).with_name("seed_families.py")


@pytest.mark.parametrize("name", ["alexnet", "vgg", "resnet", "rnn", "lstm", "gru"])
def test_seed_family_exports_quantizes_and_compares(name, tmp_path, capsys):
    out = tmp_path / f"{name}.onnx"
    code, stdout, err = run_cli(capsys, "export", f"{FACTORIES}:{name}", "-o", out, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["validation"]["passed"] and report["validation"]["max_abs_diff"] < 1e-4
    shapes = [c["inputs"] for c in report["validation"]["cases"].values()]
    recurrent = name in ("rnn", "lstm", "gru")
    key = "tokens" if recurrent else "image"
    first, second = (s[key] for s in shapes)
    assert second[0] != first[0]  # another batch
    if recurrent:
        assert second[1] != first[1]  # and another sequence length

    rng = np.random.default_rng(0)
    if recurrent:
        data = {"tokens": rng.integers(0, 100, (32, 12)).astype(np.int64), "labels": rng.integers(0, 4, 32)}
    else:
        data = {"image": rng.standard_normal((32, 3, 32, 32)).astype(np.float32), "labels": rng.integers(0, 10, 32)}
    np.savez(tmp_path / "data.npz", **data)
    int8 = tmp_path / f"{name}-int8.onnx"
    method = ["--method", "dynamic"] if recurrent else ["--method", "static", "--calib", tmp_path / "data.npz"]
    code, _, err = run_cli(capsys, "quantize", out, "-o", int8, *method)
    assert code == 0, err
    code, stdout, err = run_cli(capsys, "compare", out, int8, "--data", tmp_path / "data.npz", "--runs", "3", "--json")
    assert code == 0, err
    rows = json.loads(stdout)["rows"]
    assert rows[1]["file_size_bytes"] < rows[0]["file_size_bytes"]
    # Random weights and random labels: what is checked is that INT8 mostly picks the FP32 class.
    assert rows[1]["metrics"]["agreement_with_baseline"] >= 0.75
