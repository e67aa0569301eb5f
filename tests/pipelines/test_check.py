"""`edgeinfer compare` and `check`: the regression gate as CI uses it."""

import json

import numpy as np
import onnx
import pytest

from tests.conftest import run_cli


def test_check_passes_within_budget(capsys, lenet_onnx, lenet_int8, digits_eval):
    art, _ = lenet_int8
    code, out, _ = run_cli(
        capsys, "check", lenet_onnx, art.path, "--data", digits_eval, "--max-drop", "0.02", "--runs", "5", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["passed"] and report["violations"] == []


def test_check_fails_with_exit_1_on_an_accuracy_regression(capsys, lenet_onnx, digits_eval, tmp_path):
    model = onnx.load(str(lenet_onnx))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        w = onnx.numpy_helper.to_array(init)
        if w.dtype != np.float32:
            continue  # shapes stay intact; only the weights get noise
        init.CopyFrom(onnx.numpy_helper.from_array((w + rng.normal(0, 0.3, w.shape)).astype(w.dtype), init.name))
    noisy = tmp_path / "noisy.onnx"
    onnx.save(model, str(noisy))
    code, out, err = run_cli(
        capsys, "check", lenet_onnx, noisy, "--data", digits_eval, "--max-drop", "0.01", "--runs", "3"
    )
    assert code == 1
    assert "REGRESSION" in err and "accuracy dropped" in err


def test_check_without_budget_or_labels_is_bad_input(capsys, lenet_onnx, lenet_int8, digits_eval, tmp_path):
    art, _ = lenet_int8
    code, _, err = run_cli(capsys, "check", lenet_onnx, art.path, "--data", digits_eval)
    assert code == 2 and "--max-drop" in err
    unlabeled = tmp_path / "x.npz"
    np.savez(unlabeled, input=np.zeros((8, 1, 32, 32), np.float32))
    code, _, err = run_cli(
        capsys, "check", lenet_onnx, art.path, "--data", unlabeled, "--task", "classification", "--max-drop", "0.01"
    )
    assert code == 2 and "labels" in err


def test_compare_writes_html_and_json_rows(capsys, lenet_onnx, lenet_int8, digits_eval, tmp_path):
    art, _ = lenet_int8
    html = tmp_path / "report.html"
    code, out, _ = run_cli(
        capsys, "compare", lenet_onnx, art.path, "--data", digits_eval, "--runs", "5", "--report", html, "--json"
    )
    report = json.loads(out)
    assert code == 0 and [r["model"] for r in report["rows"]] == [str(lenet_onnx), str(art.path)]
    assert report["rows"][0]["speedup"] == 1.0 or abs(report["rows"][0]["speedup"] - 1.0) < 1e-9
    # The JSON schema (1) is the one scripts read: these keys, no more, no fewer.
    assert set(report) == {"schema", "task", "data", "samples", "batch_shape", "runs", "baseline", "rows"}
    assert report["schema"] == 1 and set(report["rows"][1]) == {
        "model", "file_size_bytes", "latency_ms", "speedup", "speedup_ci95", "metrics", "providers", "placement",
        "fallbacks", "delta",
    }  # fmt: skip
    page = html.read_text()
    assert "<table>" in page and "lenet-int8.onnx" in page and "<svg" in page and page.count("<circle") == 2


def test_pytest_helper_passes_and_fails_like_check(lenet_onnx, lenet_int8, digits_eval):
    import pytest

    from edgeinfer.testing import assert_within_budget

    art, _ = lenet_int8
    report = assert_within_budget(lenet_onnx, art.path, str(digits_eval), max_drop=0.02, runs=3)
    assert report["rows"][1]["metrics"]["accuracy"] > 0.9
    with pytest.raises(AssertionError, match="MiB, above"):
        assert_within_budget(lenet_onnx, art.path, str(digits_eval), max_size_mb=0.01, runs=3)


def test_latency_budget_is_judged_on_the_confidence_interval():
    from edgeinfer.pipelines.compare import Budget, CompareRow, ComparisonReport, check_budget

    def row(model: str) -> CompareRow:
        return CompareRow(model, 1, {"p50": 1.0}, 0.8, (0.6, 1.05), {}, ["CPUExecutionProvider"])

    cand = row("c.onnx")
    report = ComparisonReport("raw", "d.npz", 8, {"x": [8, 1]}, 5, "b.onnx", [row("b.onnx"), cand])
    assert check_budget(report, Budget(max_slowdown=1.0)) == []  # the interval still admits "not slower"
    cand.speedup_ci95 = (0.6, 0.9)
    assert "at best 1.11x" in check_budget(report, Budget(max_slowdown=1.0))[0]
    assert check_budget(report, Budget(min_speedup=1.0))  # the whole interval is below 1.0


def test_hidden_states_are_scored_as_embeddings_even_when_the_data_has_labels():
    """A feature-extraction export has no classes: labels in the data must not turn its hidden
    states into "accuracy 0.0" (SegFormer's did); asking for classification is refused."""
    from edgeinfer.core.data import Batches
    from edgeinfer.core.errors import InputError
    from edgeinfer.pipelines.compare import EvalTask, resolve_task

    data = Batches([{"pixel_values": np.zeros((2, 3, 8, 8), np.float32)}], labels=np.array([0, 1]))
    assert resolve_task(EvalTask.AUTO, data, {"task": "feature-extraction"}) is EvalTask.EMBEDDING
    assert resolve_task(EvalTask.AUTO, data, {"task": "image-classification"}) is EvalTask.CLASSIFICATION
    with pytest.raises(InputError, match="feature-extraction export .*--task embedding"):
        resolve_task(EvalTask.CLASSIFICATION, data, {"task": "feature-extraction"})
