"""optimize for an LLM: SmolLM2's F16 GGUF against the llama.cpp types that fit the memory budget,
scored on KL and top-1, the fastest within budget chosen, a bundle that verifies in a fresh process,
and a repeated run that reuses every measurement."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import forge_manifest, run_cli

pytestmark = pytest.mark.slow
MAX_KLD = 0.1


@pytest.fixture(scope="module")
def optimized(tmp_path_factory, smollm2_hf):
    from edgeinfer.devices import get_profile
    from edgeinfer.pipelines.llm import llama_settings
    from edgeinfer.pipelines.optimize.measurements import gguf_peak_memory_mb
    from edgeinfer.runtime.llama import gguf_summary

    root = tmp_path_factory.mktemp("optimize-llm")
    f16 = root / "smollm2-f16.gguf"
    code = subprocess.run([sys.executable, "-m", "edgeinfer", "export", str(smollm2_hf), "-o", str(f16)]).returncode
    assert code == 0
    # A memory budget between Q8_0's estimate and Q6_K's: Q8_0 is ruled out before it is built.
    summary = gguf_summary(f16)
    base_peak = gguf_peak_memory_mb(f16, llama_settings(get_profile("x86-avx512-vnni")))
    base_weights = summary["parameters"] * summary["bits_per_weight"] / 8
    budget = base_peak + (summary["parameters"] * (8.5 + 6.56) / 2 / 8 - base_weights) / 2**20
    env = {**os.environ, "EDGEINFER_CACHE": str(root / "cache")}
    out = root / "bundle"
    from edgeinfer.examples import SENTENCES

    calib = root / "calib.txt"  # importance-aware types are tried beside the plain ones
    calib.write_text(SENTENCES.read_text(encoding="utf-8")[8000:], encoding="utf-8")
    # Three timing rounds per candidate: what is asserted is the choice, not a speed.
    args = [sys.executable, "-m", "edgeinfer", "optimize", str(f16), "--device", "x86-avx512-vnni", "--max-kld",
            str(MAX_KLD), "--max-memory-mb", f"{budget:.1f}", "--calib", str(calib), "--runs", "3", "--json"]  # fmt: skip
    proc = subprocess.run([*args, "-o", str(out)], capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout), budget, args, env


def test_types_over_the_memory_budget_are_not_built_and_the_fastest_within_budget_is_chosen(optimized):
    _, report, budget, _, _ = optimized
    by_name = {c["name"]: c for c in report["candidates"]}
    assert report["kind"] == "gguf" and list(by_name)[0] == "baseline"
    assert {"q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"} <= set(by_name)
    q8 = by_name["q8_0"]
    assert q8["memory_estimate_mb"] > budget and q8["failed"][0].startswith("not built: estimated memory")
    assert q8["p50_ms"] is None and q8["size_bytes"] is None
    for c in report["candidates"]:
        if c["p50_ms"] is None:
            continue
        assert c["memory_mb"] > 0 and c["size_bytes"] > 0 and 0 <= c["metrics"]["top1_agreement"] <= 1
        if c["memory_estimate_mb"] is not None:
            assert c["memory_estimate_mb"] <= budget  # it was built because its estimate fitted
        assert c["met"] == (c["drop"] <= MAX_KLD and c["memory_mb"] <= budget), c
    base = by_name["baseline"]
    assert base["drop"] == 0.0 and base["metrics"]["top1_agreement"] == 1.0 and not base["met"]  # F16 is too big
    assert by_name["q4_0"]["drop"] > by_name["q6_k"]["drop"]  # fewer bits, further from F16
    for t in ("q4_k_m", "q4_0", "q3_k_m"):  # the same type and size, closer to F16 with importance
        if t in by_name:
            assert by_name[f"{t}-imatrix"]["drop"] < by_name[t]["drop"], t
            assert by_name[f"{t}-imatrix"]["size_bytes"] == by_name[t]["size_bytes"]
    met = [c for c in report["candidates"] if c["met"]]
    assert report["chosen"] == max(met, key=lambda c: c["speedup_vs_fp32"])["name"]


def test_the_llm_bundle_verifies_in_a_fresh_process_and_a_changed_byte_fails(optimized, tmp_path, capsys):
    path, report, budget, _, _ = optimized
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "gguf" and manifest["candidate"] == report["chosen"]
    assert manifest["budgets"] == {"max_kld": MAX_KLD, "max_memory_mb": round(budget, 1)}
    assert {"model.gguf", "golden.npz", "recipe.toml", "run.py", "README.md"} <= set(manifest["files"])
    recipe = (path / "recipe.toml").read_text()
    assert 'pass = "quantize-gguf"' in recipe and report["chosen"].removesuffix("-imatrix").upper() in recipe
    assert ("calib = " in recipe) == report["chosen"].endswith("-imatrix")
    proc = subprocess.run(
        [sys.executable, "-m", "edgeinfer", "verify", str(path), "--json"], cwd=tmp_path, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    checks = {c["name"]: c["passed"] for c in result["checks"]}
    assert checks == {"checksums": True, "providers": True, "golden outputs": True, "memory": True}
    assert result["providers"][0].startswith("llama.cpp CPU") and result["latency_ms"]["p50"] > 0
    # On an emulated ARM64 CPU a GGUF bundle is not run (no aarch64 llama-cpp-python wheel): its files
    # are checked and what a board needs is said, rather than a failure.
    code, out, _ = run_cli(capsys, "verify", path, "--arch", "arm64")
    said = " ".join(out.split())
    assert code == 0 and "PASS checksums" in said and "builds it from source" in said and "golden" not in said
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    data = bytearray((copy / "model.gguf").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.gguf").write_bytes(bytes(data))
    code, out, _ = run_cli(capsys, "verify", copy)
    assert code == 1 and "FAIL checksums: model.gguf does not match its sha256" in out


def test_verify_refuses_a_manifest_whose_repack_is_not_a_boolean(optimized, tmp_path, capsys):
    path, _, _, _, _ = optimized
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert "repack" in manifest  # what the device profile chose; None: llama.cpp's default, off on AMX
    manifest["repack"] = "yes"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "verify", copy)
    assert code == 2 and "repack is 'yes'; expected true or false" in err


@pytest.mark.parametrize("token", [10**9, -7])
def test_golden_tokens_outside_the_vocabulary_are_refused_before_llama_cpp_sees_them(
    optimized, tmp_path, capsys, token
):
    import numpy as np

    path, _, _, _, _ = optimized
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    with np.load(copy / "golden.npz") as g:
        golden = {k: g[k] for k in g.files}
    golden["tokens"] = golden["tokens"].copy()
    golden["tokens"][3] = token
    np.savez(copy / "golden.npz", **golden)
    code, _, err = run_cli(capsys, "verify", forge_manifest(copy))
    assert code == 2 and "outside the model's vocabulary" in err


def test_run_py_needs_only_llama_cpp(optimized, tmp_path):
    path, _, _, _, _ = optimized
    blocker = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('edgeinfer', 'torch', 'transformers', 'onnx', 'onnxruntime', 'sklearn'):\n"
        "            raise ImportError('not on the device: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv = ['run.py', 'The capital of France is', '--max-tokens', '8']\n"
        f"runpy.run_path({str(path / 'run.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", blocker], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("The capital of France is") and len(proc.stdout.split()) > 5


def test_a_repeated_run_reuses_every_measurement(optimized, tmp_path):
    _, first, _, args, env = optimized
    proc = subprocess.run([*args, "-o", str(tmp_path / "again")], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(proc.stdout)
    # The contenders are measured again, so two close ones may trade places on a busy machine.
    assert again["chosen"] in {c["name"] for c in first["candidates"] if c["met"]}
    chosen = next(c for c in again["candidates"] if c["name"] == again["chosen"])
    # A cache hit orders the search; what ships is built and measured again, never taken on trust.
    assert not chosen["cached"] and chosen["p50_ms"] is not None
    for before, now in zip(first["candidates"], again["candidates"]):
        if not now["cached"] and now["met"]:
            continue  # a contender for the choice, measured again (at most once) before one ships
        assert now["cached"] == (before["p50_ms"] is not None)  # measured once, never again
        assert (now["p50_ms"], now["drop"], now["memory_mb"]) == (before["p50_ms"], before["drop"], before["memory_mb"])
    recorded = json.loads((tmp_path / "again" / "manifest.json").read_text())["files"]["model.gguf"]["sha256"]
    assert recorded == next(c["sha256"] for c in again["candidates"] if c["name"] == again["chosen"])


def test_onnx_budgets_are_refused_for_an_llm(smollm2, tmp_path, capsys):
    code, _, err = run_cli(capsys, "optimize", smollm2, "--max-drop", "0.01", "-o", tmp_path / "b")
    assert code == 2 and "--max-drop do not apply to GGUF models; use --max-kld / --min-top1" in err
    code, _, err = run_cli(capsys, "optimize", smollm2, "--text", tmp_path / "missing.txt", "-o", tmp_path / "b")
    assert code == 2 and "missing.txt" in err and not (tmp_path / "b").exists()


def test_the_llm_search_runs_as_the_profile_says_and_refuses_gpu_layers_it_cannot_offload(smollm2, tmp_path, capsys):
    """The profile's [llm] table is what the search measures with: a board asking for GPU layers is
    refused where llama.cpp has no GPU offload (as `bench --device` refuses it), before any scoring,
    instead of timing every candidate on the CPU and shipping a manifest that asks for the GPU."""
    llama_cpp = pytest.importorskip("llama_cpp")
    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama.cpp offloads to a GPU: the refusal is for builds without one")
    board = tmp_path / "board.toml"
    board.write_text('name = "board"\nproviders = ["cpu"]\n[llm]\nn_gpu_layers = 99\nn_ctx = 512\nkv_type = "q8_0"\n')
    code, _, err = run_cli(capsys, "optimize", smollm2, "--device", board, "-o", tmp_path / "b")
    assert code == 2 and "99 GPU layers requested" in err and not (tmp_path / "b").exists()


def test_every_profiles_llm_table_reaches_llama_cpps_settings_and_options_win():
    from edgeinfer.devices import builtin_profiles
    from edgeinfer.pipelines.llm import llama_settings

    for name, profile in builtin_profiles().items():
        s = llama_settings(profile)
        assert (s.n_ctx, s.n_gpu_layers, s.kv_type, s.extra_buffers, s.threads) == (
            profile.llm.n_ctx, profile.llm.n_gpu_layers, profile.llm.kv_type, profile.llm.repack, profile.threads,
        ), name  # fmt: skip
        mine = llama_settings(profile, n_ctx=64, gpu_layers=0, kv_type="q4_0", repack=False, threads=1)
        assert (mine.n_ctx, mine.n_gpu_layers, mine.kv_type, mine.extra_buffers, mine.threads) == (
            64,
            0,
            "q4_0",
            False,
            1,
        )
