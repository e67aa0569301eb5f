"""Memory before loading: `fit` estimates a GGUF LLM's peak from its header (weights, KV cache at
the context and KV type, compute buffers) plus the measured Python runtime, within 15% of the real
peak of a fresh process; KV-cache types cut the cache and `compare --kv-type` measures their cost."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("ctx", [512, 4096])
def test_the_estimate_is_within_15_percent_of_the_measured_peak(smollm2, ctx, capsys):
    code, out, err = run_cli(capsys, "fit", smollm2, "--ctx", str(ctx), "--measure", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["fits"] and result["budget_from"] == "free memory now"
    assert abs(result["estimate_error"]) <= 0.15, result
    parts = result["parts_mb"]
    assert parts["weights"] > 50 and parts["kv_cache"] > 0 and parts["runtime"] > 10


def test_a_quantized_kv_cache_is_smaller_and_its_quality_cost_is_measured(smollm2, capsys):
    from edgeinfer.pipelines.llm import fit_gguf, llama_settings

    f16 = fit_gguf(smollm2, llama_settings(n_ctx=4096))
    q4 = fit_gguf(smollm2, llama_settings(n_ctx=4096, kv_type="q4_0"))
    assert q4["parts_mb"]["kv_cache"] < 0.3 * f16["parts_mb"]["kv_cache"]
    code, out, err = run_cli(capsys, "compare", smollm2, smollm2, "--kv-type", "q4_0", "--max-tokens", "512", "--json")
    assert code == 0, err
    cand = json.loads(out)["rows"][1]
    assert 0 < cand["kl_mean"] < 0.5 and cand["top1_agreement"] > 0.8  # the same weights: only the cache differs
    assert cand["kv_type"] == "q4_0" and "kv_type" not in json.loads(out)["rows"][0]  # rows say which is which
    code, _, err = run_cli(capsys, "fit", smollm2, "--kv-type", "q3_k")
    assert code == 2 and "q8_0" in err


def test_a_model_over_the_profile_budget_does_not_fit(smollm2, capsys):
    from edgeinfer.pipelines.llm import fit_gguf, llama_settings

    tiny = SimpleNamespace(name="tiny-board", memory_mb=128)
    result = fit_gguf(smollm2, llama_settings(n_ctx=2048), tiny)
    assert not result["fits"] and result["budget_mb"] == 128 and result["budget_from"] == "tiny-board memory_mb"
    code, out, err = run_cli(capsys, "fit", smollm2, "--ctx", "2048", "--device", "raspberry-pi-5", "--json")
    result = json.loads(out)
    assert result["budget_from"] == "raspberry-pi-5 memory_mb" and result["budget_mb"] > result["estimate_mb"]
    assert code == 0 and result["fits"]


def test_missing_models_are_named_not_a_traceback(smollm2, tmp_path, capsys):
    code, _, err = run_cli(capsys, "compare", tmp_path / "nope.gguf", smollm2)
    assert code == 2 and "baseline model" in err and "does not exist" in err and "internal error" not in err
    code, _, err = run_cli(capsys, "fit", tmp_path / "nope.gguf")
    assert code == 2 and "does not exist" in err


def test_a_context_past_the_trained_one_is_flagged_though_it_fits(smollm2, capsys):
    code, out, _ = run_cli(capsys, "fit", smollm2, "--ctx", "16384", "--json")
    result = json.loads(out)
    assert code == 0 and result["trained_context"] == 8192 and "trained for a context of 8,192" in result["warning"]
    code, out, _ = run_cli(capsys, "fit", smollm2, "--ctx", "4096", "--json")
    assert "warning" not in json.loads(out)
