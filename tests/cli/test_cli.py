"""The command line as a user meets it: one clear line, a non-zero code, nothing lost."""

import json
import os

import numpy as np
import pytest

from tests.conftest import run_cli


def test_run_writes_outputs_and_reports_providers(capsys, lenet_onnx, digits_eval, tmp_path):
    out = tmp_path / "logits.npz"
    code, stdout, _ = run_cli(capsys, "run", lenet_onnx, "-i", digits_eval, "-o", out, "--json")
    assert code == 0
    report = json.loads(stdout)
    assert report["providers"]["used"] == ["CPUExecutionProvider"]
    with np.load(out) as data:
        logits = data[data.files[0]]
    with np.load(digits_eval) as data:
        assert (logits.argmax(1) == data["labels"]).mean() > 0.9


def test_run_with_wrong_input_name_is_one_line_and_exit_2(capsys, lenet_onnx, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, pixels=np.zeros((1, 1, 32, 32), np.float32))
    code, _, stderr = run_cli(capsys, "run", lenet_onnx, "-i", bad)
    assert code == 2
    assert stderr.strip().startswith("error:") and "The model expects: input" in stderr
    assert "Traceback" not in stderr


def test_run_refuses_existing_output_and_keeps_it(capsys, lenet_onnx, digits_eval, tmp_path):
    out = tmp_path / "keep.npz"
    out.write_bytes(b"keep me")
    code, _, stderr = run_cli(capsys, "run", lenet_onnx, "-i", digits_eval, "-o", out)
    assert code == 2 and "--force" in stderr
    assert out.read_bytes() == b"keep me"


def test_unavailable_provider_from_cli_names_package(capsys, lenet_onnx, digits_eval):
    code, _, stderr = run_cli(capsys, "run", lenet_onnx, "-i", digits_eval, "--provider", "cuda")
    assert code == 2 and "pip install onnxruntime-gpu" in stderr


def test_bench_json_has_stable_keys_and_baseline_speedup(capsys, lenet_onnx):
    code, stdout, stderr = run_cli(
        capsys,
        "bench",
        lenet_onnx,
        "--runs",
        "10",
        "--warmup",
        "2",
        "--shape",
        "batch=4",
        "--baseline",
        "auto",
        "--trust-source",
        "--json",
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["inputs"] == {"input": [4, 1, 32, 32]}
    assert {"p50", "p90", "p99"} <= set(result["latency_ms"])
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert result["baseline"]["speedup"] > 0 and result["providers"]["used"] == ["CPUExecutionProvider"]
    # Where the CPU has BF16, eager PyTorch under bf16 autocast is timed too: what its users would run.
    from edgeinfer.devices import host_has_bf16

    assert ("baseline_bf16" in result) == host_has_bf16()
    if host_has_bf16():
        bf16 = result["baseline_bf16"]
        assert bf16["runtime"] == "pytorch-eager-bf16-autocast" and bf16["latency_ms"]["p50"] > 0


def test_bench_says_slower_when_pytorch_beats_onnx_runtime(capsys, lenet_onnx, monkeypatch):
    import edgeinfer.pipelines.bench as bench
    from edgeinfer.pipelines.bench import BaselineTiming, BenchReport

    def measured(*args, **kwargs) -> BenchReport:
        eager = BaselineTiming("a:b", {"p50": 1.0, "p90": 1.1, "p99": 1.2}, 0.62, (0.58, 0.66))
        return BenchReport(
            str(lenet_onnx), 1, {"input": [1, 1, 32, 32]}, 1, 10, 2, {"p50": 1.6, "p90": 1.7, "p99": 1.9}, 600.0,
            100.0, {"requested": ["CPUExecutionProvider"], "used": ["CPUExecutionProvider"], "fallbacks": [],
            "placement": {}}, eager,
        )  # fmt: skip

    monkeypatch.setattr(bench, "bench_model", measured)
    code, stdout, stderr = run_cli(capsys, "bench", lenet_onnx, "--baseline", "auto", "--trust-source")
    assert code == 0 and "SLOWER" in stdout and "0.62x" in stdout
    assert "SLOWER: ONNX Runtime runs lenet.onnx at 1.61x eager PyTorch's latency" in stderr
    eager = BaselineTiming("a:b", {"p50": 1.0}, 0.98, (0.9, 1.05))
    assert not eager.slower  # an interval that still admits "not slower" is not called slower


def test_bench_rejects_malformed_shape(capsys, lenet_onnx):
    code, _, stderr = run_cli(capsys, "bench", lenet_onnx, "--shape", "input=axb")
    assert code == 2 and "input_name=1x128" in stderr


def test_errors_name_flags_on_the_command_line_and_fields_from_python(capsys, lenet_onnx, tmp_path):
    from edgeinfer.core.errors import ConfigError, OutputExistsError
    from edgeinfer.pipelines.bench import parse_shapes
    from edgeinfer.pipelines.quantize import quantize_model

    code, _, stderr = run_cli(capsys, "bench", lenet_onnx, "--shape", "input=axb")
    assert code == 2 and "--shape 'input=axb'" in stderr
    with pytest.raises(ConfigError, match="^shapes 'input=axb' must look like"):
        parse_shapes(["input=axb"])
    (tmp_path / "q.onnx").write_bytes(b"keep")
    code, _, stderr = run_cli(capsys, "quantize", lenet_onnx, "-o", tmp_path / "q.onnx", "--exclude", "nope")
    assert code == 2 and "pass --force to overwrite" in stderr
    with pytest.raises(OutputExistsError, match="pass force=True to overwrite"):
        quantize_model(lenet_onnx, tmp_path / "q.onnx", method="dynamic")
    code, _, stderr = run_cli(capsys, "quantize", lenet_onnx, "-o", tmp_path / "r.onnx", "--exclude", "nope")
    assert code == 2 and "--exclude 'nope' matches no node" in stderr
    assert (tmp_path / "q.onnx").read_bytes() == b"keep" and not (tmp_path / "r.onnx").exists()


def test_devices_lists_profiles_and_installed_providers(capsys):
    code, stdout, _ = run_cli(capsys, "devices", "--json")
    data = json.loads(stdout)
    assert code == 0 and "CPUExecutionProvider" in data["available_providers"]
    assert data["profiles"]["x86-laptop"]["installed"] == ["CPUExecutionProvider"]


def test_verbose_shows_traceback(capsys, tmp_path):
    code, _, stderr = run_cli(capsys, "--verbose", "run", tmp_path / "none.onnx", "-i", tmp_path / "x.npz")
    assert code == 2 and "Traceback" in stderr


def test_openmp_spins_briefly_unless_the_user_chose(monkeypatch):
    """PASSIVE alone made llama.cpp's 2-thread generation 3x slower (an OpenMP barrier per node);
    measurements ask for a short spin instead, and leave a user's own OpenMP settings alone."""
    from edgeinfer.core.measure import measurement_env

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    chosen = measurement_env()
    assert chosen["OMP_WAIT_POLICY"] == "PASSIVE" and 0 < int(chosen["GOMP_SPINCOUNT"]) < 300_000
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert measurement_env() == {}
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")
    assert measurement_env() == {}


@pytest.mark.parametrize("entry", ["cli", "optimize", "compare_models", "bench_model", "verify"])
def test_every_entry_point_that_times_sets_openmp_as_the_cli_does(entry, tmp_path):
    """A Python caller of optimize(), compare or bench times under the same OpenMP setting as the
    CLI: set before torch or llama.cpp loads (OpenMP reads it once), even when the call then fails."""
    import subprocess
    import sys

    calls = {
        "cli": "from edgeinfer.cli import main\nsys.argv = ['edgeinfer', 'run', 'missing.onnx', '-i', 'x.npz']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass",
        "optimize": "from edgeinfer.pipelines.optimize import optimize\n"
        "try:\n    optimize('missing.onnx', Path('b'), data='x.npz')\nexcept Exception:\n    pass",
        "compare_models": "from edgeinfer.pipelines.compare import compare_models\n"
        "try:\n    compare_models(Path('a.onnx'), [Path('b.onnx')], 'x.npz')\nexcept Exception:\n    pass",
        "bench_model": "from edgeinfer.pipelines.bench import bench_model\n"
        "try:\n    bench_model(Path('a.onnx'))\nexcept Exception:\n    pass",
        "verify": "from edgeinfer.pipelines.deploy.verify import verify\n"
        "try:\n    verify(Path('missing-bundle'))\nexcept Exception:\n    pass",
    }
    script = (
        "import os, sys\nfrom pathlib import Path\n" + calls[entry] + "\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.stdout.split()[-3:] == ["PASSIVE", "3000", "False"], out.stdout + out.stderr[-2000:]


def test_progress_goes_to_a_log_as_plain_lines_when_stderr_is_not_a_terminal(lenet_onnx):
    import os
    import re
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "edgeinfer", "bench", str(lenet_onnx), "--runs", "30"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "EDGEINFER_PROGRESS_AFTER_S": "0"},
    )  # fmt: skip (lines start at once, not after the 2 s a quick command never reaches)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all(re.match(r"\[\s*\d+\.\ds\] ", line) for line in lines), proc.stderr
    assert any(line.endswith("30/30 timing") for line in lines)  # a counted step's last state


def test_the_gguf_comparison_table_fits_80_columns_with_every_column_and_unbroken_numbers(monkeypatch, capsys):
    """The GGUF comparison table as a user's 80-column terminal shows it."""
    from rich.console import Console

    from edgeinfer.cli import llm
    from edgeinfer.pipelines.llm_eval import LlmComparisonReport, LlmRow

    narrow = Console(width=80, force_terminal=False, color_system=None)
    monkeypatch.setattr(llm, "console", narrow)
    names = ["SmolLM2-135M-Instruct.F16.gguf", "SmolLM2-135M-Instruct.Q4_K_M.gguf", "SmolLM2-135M-Instruct.Q8_0.gguf"]
    rows = [
        LlmRow(model=f"/models/{n}", architecture="llama", parameters=134_515_008, bits_per_weight=16.0 - 5 * i,
               context_length=8192, tensor_types={}, file_size_bytes=270_000_000 - i * 80_000_000,
               perplexity=16.2412, scored_tokens=1023, pp_tokens_per_s=1234.5, tg_tokens_per_s=123.45,
               kl_mean=None if i == 0 else 0.05123, kl_p99=None if i == 0 else 1.2345,
               top1_agreement=None if i == 0 else 0.887, peak_memory_mb=1234.0)
        for i, n in enumerate(names)
    ]  # fmt: skip
    llm.print_llm_report(LlmComparisonReport("held-out.txt", 512, 1024, rows))
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80, out
    header = " ".join(lines[:8])
    for col in ("MiB", "bpw", "pp", "tg", "peak", "ppl", "KL", "p99", "top-1"):
        assert col in header, (col, out)
    for figure in ("16.241", "0.0512", "1.2345", "0.887", "1234", "F16.gguf", "Q4_K_M.gguf", "Q8_0.gguf"):
        assert figure in out, (figure, out)


def test_options_that_do_nothing_for_the_input_format_are_refused(capsys, smollm2, lenet_onnx, tmp_path):
    code, _, err = run_cli(capsys, "bench", smollm2, "--shape", "batch=2")
    assert code == 2 and "--shape applies to ONNX models, not to a GGUF LLM" in err
    text = tmp_path / "t.txt"
    text.write_text("calibration text " * 20)
    code, _, err = run_cli(
        capsys, "quantize", smollm2, "-o", tmp_path / "q.gguf", "--method", "Q4_K_M", "--calib-samples", "8"
    )
    assert code == 2 and "--calib-samples applies to ONNX models" in err and not (tmp_path / "q.gguf").exists()
    code, _, err = run_cli(capsys, "quantize", smollm2, "-o", tmp_path / "q.gguf", "--calib", text)
    assert code == 2 and "give at least 64" in err and "Converting" not in err  # --calib is the GGUF's text
    code, _, err = run_cli(capsys, "bench", lenet_onnx, "--repack")
    assert code == 2 and "--repack applies to GGUF LLMs" in err
    code, _, err = run_cli(capsys, "quantize", lenet_onnx, "-o", tmp_path / "q.onnx", "--imatrix", text)
    assert code == 2 and "--imatrix applies to GGUF LLMs" in err and not (tmp_path / "q.onnx").exists()


def test_run_and_bench_take_the_kv_cache_type_like_fit_serve_and_compare(capsys, smollm2, lenet_onnx):
    code, out, err = run_cli(
        capsys, "bench", smollm2, "--kv-type", "q8_0", "--n-prompt", "32", "--n-gen", "8", "--runs", "1", "--json"
    )
    assert code == 0 and json.loads(out)["tg_tokens_per_s"] > 0, err
    code, out, err = run_cli(
        capsys, "run", smollm2, "--prompt", "Hi", "--max-tokens", "3", "--kv-type", "q4_0", "--json"
    )
    assert code == 0 and json.loads(out)["generated_tokens"] >= 1, err
    code, _, err = run_cli(capsys, "run", smollm2, "--prompt", "Hi", "--kv-type", "q3_k")
    assert code == 2 and "q8_0" in err
    code, _, err = run_cli(capsys, "bench", lenet_onnx, "--kv-type", "q4_0")
    assert code == 2 and "--kv-type applies to GGUF LLMs" in err


def test_chat_replies_with_the_profiles_settings_and_refuses_a_model_that_is_not_a_gguf(smollm2, lenet_onnx):
    """`edgeinfer chat` loads through the runtime interface: a GGUF answers each line and says its
    speed; any other model is refused in one line (exit 2) before anything loads."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "edgeinfer",
        "chat",
        str(smollm2),
        "--max-tokens",
        "4",
        "--ctx",
        "256",
        "--threads",
        "2",
    ]
    done = subprocess.run(cmd, input="Say hi\n\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "tok/s" in done.stderr and done.stdout.strip().startswith(">"), done.stdout + done.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "edgeinfer", "chat", str(lenet_onnx)], input="", capture_output=True, text=True
    )
    assert (
        refused.returncode == 2 and "chat takes a GGUF LLM" in refused.stderr and "not an ONNX model" in refused.stderr
    )
