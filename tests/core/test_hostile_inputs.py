"""Bad input through the CLI: exit 2 (130 for Ctrl-C), one line on stderr, no traceback, nothing
written and nothing of the user's touched."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

_PROGRESS = re.compile(r"\[ *\d+\.\ds\] ")


def assert_refused(code: int, stderr: str, *, contains: str | None = None, expect: int = 2) -> None:
    assert code == expect, stderr
    assert "Traceback" not in stderr, stderr
    # Progress lines ("[    2.1s] loading ...") start after 2 s on a busy machine; the refusal is one line.
    lines = [line for line in stderr.strip().splitlines() if line.strip() and not _PROGRESS.match(line)]
    assert len(lines) == 1, stderr
    if contains is not None:
        assert contains.lower() in stderr.lower(), stderr


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ---------------------------------------------------------------------------------- usage and exit codes


@pytest.mark.parametrize(
    "args, contains",
    [
        (["export", "--bogus"], "No such option"),
        (["exprot", "x"], "No such command"),
        (["export", "edgeinfer.examples.digits:lenet"], "--output"),
        (["bench", "m.onnx", "--runs", "abc"], "--runs"),
        (["bench", "m.onnx", "--runs", "0"], "--runs"),
        (["bench", "m.gguf", "--n-prompt", "0"], "--n-prompt"),
        (["bench", "m.onnx", "--threads", "100000"], "--threads"),
        (["compare", "a.onnx", "b.onnx", "--data", "d.npz", "--batch-size", "0"], "--batch-size"),
        (["compare", "a.onnx", "b.onnx", "--data", "d.npz", "--limit", "-1"], "--limit"),
        (["compare", "a.gguf", "b.gguf", "--window", "0"], "--window"),
        (["export", "edgeinfer.examples.digits:lenet", "-o", "x.onnx", "--opset", "99"], "--opset"),
        (["export", "x", "-o", "x.gguf", "--check-tokens", "100000"], "--check-tokens"),
        (["check", "a.onnx", "b.onnx", "--data", "d.npz", "--max-drop", "nan"], "max"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, tmp_path, monkeypatch, args, contains):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli(capsys, *args)
    assert_refused(code, stderr, contains=contains)
    assert list(tmp_path.iterdir()) == []


def test_bare_command_prints_help_and_exits_0(capsys):
    code, stdout, stderr = run_cli(capsys)
    assert code == 0 and "Usage" in stdout and "Traceback" not in stderr


def test_help_shows_flags_without_a_type(capsys):
    code, stdout, _ = run_cli(capsys, "quantize", "--help")
    assert code == 0 and "--force" in stdout and "<bool>" not in stdout


def test_ctrl_c_exits_130_saying_nothing_was_written(capsys, lenet_onnx, tmp_path, monkeypatch):
    import edgeinfer.pipelines.bench

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgeinfer.pipelines.bench, "bench_model", interrupted)
    code, _, stderr = run_cli(capsys, "bench", lenet_onnx)
    assert_refused(code, stderr, contains="interrupted", expect=130)


@pytest.mark.slow
def test_sigint_on_a_real_run_exits_130(lenet_onnx, tmp_path):
    import signal
    import time

    out = tmp_path / "q.onnx"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-P",
            "-c",
            "from edgeinfer.cli import main; main()",
            "bench",
            str(lenet_onnx),
            "--runs",
            "100000",
            "--warmup",
            "0",
            "--shape",
            "batch=2048",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal, whatever launched these tests: a runner started with `&` by a
        # script hands its children SIGINT ignored, and Python then installs no handler for it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(12)  # imports, session, then timing
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists()


# ---------------------------------------------------------------------------------- ONNX files


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", b"\x08\x07\x12\x02" + os.urandom(64)])
def test_quantize_of_a_broken_onnx_file_is_one_line(capsys, tmp_path, content):
    model = tmp_path / "m.onnx"
    model.write_bytes(content)
    code, _, stderr = run_cli(capsys, "quantize", model, "-o", tmp_path / "q.onnx")
    assert_refused(code, stderr, contains="onnx")
    assert snapshot(tmp_path) == {"m.onnx": content}


def test_truncated_onnx_is_refused_by_every_command(capsys, lenet_onnx, digits_eval, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(lenet_onnx.read_bytes()[:5000])
    for args in (
        ["quantize", model, "-o", tmp_path / "q.onnx"],
        ["run", model, "-i", digits_eval],
        ["bench", model, "--runs", "2"],
        ["info", model],
    ):
        code, _, stderr = run_cli(capsys, *args)
        if args[0] == "info":  # info reads the sidecar record only; there is none
            assert code == 0
            continue
        assert_refused(code, stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_quantize_writes_no_work_files_beside_the_input(capsys, lenet_onnx, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    model = folder / "lenet.onnx"
    shutil.copy(lenet_onnx, model)
    (folder / "lenet-inferred.onnx").write_bytes(b"the user's own file")
    before = snapshot(folder)
    code, _, stderr = run_cli(capsys, "quantize", model, "-o", tmp_path / "q.onnx", "--method", "dynamic")
    assert code == 0, stderr
    assert snapshot(folder) == before


def test_a_failed_command_creates_no_output_folders(capsys, lenet_onnx, tmp_path):
    out = tmp_path / "new" / "deeper" / "q.onnx"
    code, _, stderr = run_cli(capsys, "quantize", lenet_onnx, "-o", out, "--method", "int4")
    assert_refused(code, stderr, contains="MatMul")
    assert not (tmp_path / "new").exists()


def test_failed_onnx_load_leaves_no_profiler_folder(capsys, tmp_path, digits_eval):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"garbage")
    before = {p.name for p in Path(tempfile.gettempdir()).glob("edgeinfer-prof-*")}
    code, _, stderr = run_cli(capsys, "run", model, "-i", digits_eval)
    assert_refused(code, stderr)
    assert {p.name for p in Path(tempfile.gettempdir()).glob("edgeinfer-prof-*")} <= before


# ---------------------------------------------------------------------------------- outputs and races


def test_a_second_writer_of_one_output_is_refused(tmp_path):
    from edgeinfer.core.errors import OutputExistsError
    from edgeinfer.core.io import atomic_path

    out = tmp_path / "m.onnx"
    with atomic_path(out) as tmp:
        tmp.write_bytes(b"first")
        with pytest.raises(OutputExistsError, match="another edgeinfer run"):
            with atomic_path(out):
                pass
    assert out.read_bytes() == b"first"
    with pytest.raises(OutputExistsError, match="meanwhile"):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"second")
    assert out.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_stale_temporaries_of_dead_runs_are_removed(tmp_path):
    from edgeinfer.core.io import write_text_atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".big.onnx.tmp-{int(dead.stdout)}"
    stale.mkdir()
    (stale / "big.onnx").write_bytes(b"x" * 1000)
    write_text_atomic(tmp_path / "other.json", "{}")
    assert not stale.exists()


def test_stale_sidecar_is_warned_about(capsys, lenet_onnx, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(lenet_onnx, model)
    side = json.loads(Path(str(lenet_onnx) + ".edgeinfer.json").read_text())
    side["sha256"] = "0" * 64
    Path(str(model) + ".edgeinfer.json").write_text(json.dumps(side))
    code, _, stderr = run_cli(capsys, "bench", model, "--runs", "2", "--warmup", "0")
    assert code == 0 and "sha256 differs" in stderr


@pytest.mark.parametrize(
    "sidecar",
    [
        "{not json",
        "[1, 2]",
        '{"steps": 5}',
        '{"steps": [{"op": 1}]}',
        '{"steps": [{"op": "export", "evil": 1}]}',
        '{"source": []}',
    ],
)
def test_malformed_sidecar_is_one_line(capsys, lenet_onnx, tmp_path, sidecar):
    model = tmp_path / "m.onnx"
    shutil.copy(lenet_onnx, model)
    Path(str(model) + ".edgeinfer.json").write_text(sidecar)
    code, _, stderr = run_cli(capsys, "info", model)
    assert_refused(code, stderr, contains="sidecar")


# ---------------------------------------------------------------------------------- data files and options


def test_npz_that_is_not_a_zip_says_so(capsys, lenet_onnx, tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"\x93NUMPY not a zip")
    code, _, stderr = run_cli(capsys, "run", lenet_onnx, "-i", bad)
    assert_refused(code, stderr, contains="not an .npz")
    assert "allow_pickle" not in stderr


def test_npz_with_python_objects_is_refused_without_unpickling(capsys, lenet_onnx, tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, input=np.array([{"a": 1}], dtype=object))
    code, _, stderr = run_cli(capsys, "run", lenet_onnx, "-i", bad)
    assert_refused(code, stderr, contains="never unpickles")


def test_a_directory_is_not_reported_as_missing(capsys, tmp_path, digits_eval):
    code, _, stderr = run_cli(capsys, "run", tmp_path, "-i", digits_eval)
    assert_refused(code, stderr, contains="directory")


def test_huge_synthetic_shape_is_refused_before_allocating(capsys, lenet_onnx):
    code, _, stderr = run_cli(capsys, "bench", lenet_onnx, "--shape", "batch=100000000")
    assert_refused(code, stderr, contains="GiB")


@pytest.mark.parametrize(
    "budget", [["--min-cosine", "2"], ["--max-drop", "-1"], ["--min-cosine", "0.5"], ["--max-size", "nan"]]
)
def test_impossible_or_meaningless_budgets_are_refused(capsys, lenet_onnx, digits_eval, budget):
    code, _, stderr = run_cli(capsys, "check", lenet_onnx, lenet_onnx, "--data", digits_eval, "--runs", "2", *budget)
    assert_refused(code, stderr)


@pytest.mark.parametrize(
    "toml",
    [
        'name = "x"\nproviders = ["cpu"]\n[quant]\nreduce_range = "false"\n',
        'name = "x"\nproviders = ["cpu"]\nstatic_shapes = "no"\n',
        'name = "x"\nproviders = ["cpu"]\nquant = 5\n',
        'name = "x"\nproviders = ["cpu"]\n[llm]\nn_ctx = "abc"\n',
        'name = "x"\nproviders = [1]\n',
        None,  # binary
    ],
)
def test_bad_device_profiles_are_one_line(capsys, lenet_onnx, digits_eval, tmp_path, toml):
    profile = tmp_path / "dev.toml"
    profile.write_bytes(os.urandom(256) + b"\xff\xfe" if toml is None else toml.encode())
    code, _, stderr = run_cli(capsys, "run", lenet_onnx, "-i", digits_eval, "--device", profile)
    assert_refused(code, stderr, contains="device profile")


# ---------------------------------------------------------------------------------- Hugging Face folders


def _safetensors(header: object, data: bytes = b"\0" * 64, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


_GOOD = {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}
HOSTILE_WEIGHTS = {
    "truncated": _safetensors(_GOOD, b"\0" * 10),
    "zero header length": _safetensors(_GOOD, length=0),
    "huge header length": _safetensors(_GOOD, length=2**62),
    "short file": b"\x10\0\0",
    "header not json": _safetensors(b"{this is not json"),
    "header a list": _safetensors([1, 2, 3]),
    "header binary": _safetensors(b"\xff\xfe\x00\x81" * 8),
    "shape does not match bytes": _safetensors({"w": {"dtype": "F32", "shape": [8, 8], "data_offsets": [0, 64]}}),
    "unknown dtype": _safetensors({"w": {"dtype": "Q9", "shape": [4, 4], "data_offsets": [0, 64]}}),
    "no data_offsets": _safetensors({"w": {"dtype": "F32", "shape": [4, 4]}}),
    "overflowing shape": _safetensors({"w": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 64]}}),
    "negative dim": _safetensors({"w": {"dtype": "F32", "shape": [-4, -4], "data_offsets": [0, 64]}}),
}


def _hf_folder(minilm_dir: Path, folder: Path, weights: bytes, arch: str = "LlamaForCausalLM") -> Path:
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_dir / name).is_file():
            shutil.copy(minilm_dir / name, folder / name)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": [arch],
                "model_type": "llama",
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "vocab_size": 30522,
                "max_position_embeddings": 64,
            }
        )
    )
    (folder / "model.safetensors").write_bytes(weights)
    return folder


@pytest.mark.parametrize("case", list(HOSTILE_WEIGHTS))
@pytest.mark.parametrize("suffix", [".onnx", ".gguf"])
def test_hostile_safetensors_is_one_line_for_both_exports(capsys, minilm_dir, tmp_path, case, suffix):
    folder = _hf_folder(minilm_dir, tmp_path / "model", HOSTILE_WEIGHTS[case])
    before = snapshot(folder)
    out = tmp_path / f"out{suffix}"
    code, _, stderr = run_cli(capsys, "export", folder, "-o", out)
    assert_refused(code, stderr)
    assert not out.exists() and snapshot(folder) == before


@pytest.mark.parametrize(
    "file, content",
    [
        ("tokenizer.json", "truncated"),
        ("tokenizer.json", b"\x00\xff\xfe binary"),
        ("tokenizer.json", "{}"),
        ("tokenizer.json", json.dumps({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}})),
        ("config.json", "{invalid"),
        ("config.json", "[1, 2]"),
    ],
)
def test_broken_tokenizer_or_config_is_one_line(capsys, minilm_dir, tmp_path, file, content):
    folder = tmp_path / "model"
    shutil.copytree(minilm_dir, folder)
    if content == "truncated":
        content = (minilm_dir / file).read_bytes()[:1000]
    (folder / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    if file == "tokenizer.json":
        (folder / "vocab.txt").unlink(missing_ok=True)  # the tokenizer must come from tokenizer.json
    code, _, stderr = run_cli(capsys, "export", folder, "-o", tmp_path / "out.onnx")
    assert_refused(code, stderr)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("file", ["config.json", "tokenizer.json"])
def test_a_json_file_over_its_budget_is_refused_before_it_is_read(capsys, minilm_dir, tmp_path, file):
    from edgeinfer.core.formats import MAX_JSON_BYTES

    folder = tmp_path / "model"
    shutil.copytree(minilm_dir, folder)
    with (folder / file).open("r+b") as f:  # sparse: over the budget without writing it
        f.truncate(MAX_JSON_BYTES + 1)
    code, _, stderr = run_cli(capsys, "export", folder, "-o", tmp_path / "out.onnx")
    assert_refused(code, stderr, contains=f"at most {MAX_JSON_BYTES >> 20} MiB are read")
    assert not (tmp_path / "out.onnx").exists()


def test_folder_without_tokenizer_files_is_refused(capsys, minilm_dir, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(minilm_dir / name, folder / name)
    code, _, stderr = run_cli(capsys, "export", folder, "-o", tmp_path / "out.onnx")
    assert_refused(code, stderr, contains="tokenizer")
    assert not (tmp_path / "out.onnx").exists()


# ---------------------------------------------------------------------------------- GGUF files


def _empty_gguf(path: Path) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_without_tensors_is_not_quantized(capsys, tmp_path):
    model = _empty_gguf(tmp_path / "empty.gguf")
    code, _, stderr = run_cli(capsys, "quantize", model, "-o", tmp_path / "q.gguf", "--method", "Q8_0")
    assert_refused(code, stderr, contains="no tensors")
    assert not (tmp_path / "q.gguf").exists()


def test_gguf_quantize_to_an_onnx_name_is_refused(capsys, smollm2, tmp_path):
    code, _, stderr = run_cli(capsys, "quantize", smollm2, "-o", tmp_path / "x.onnx", "--method", "Q8_0")
    assert_refused(code, stderr, contains=".gguf")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cut", [3, 100, 2000])
def test_truncated_gguf_is_refused_before_llama_cpp(capsys, smollm2, tmp_path, cut):
    model = tmp_path / "cut.gguf"
    with open(smollm2, "rb") as fh:
        model.write_bytes(fh.read(cut))
    for args in (
        ["run", model, "--prompt", "hi"],
        ["bench", model],
        ["quantize", model, "-o", tmp_path / "q.gguf", "--method", "Q8_0"],
    ):
        code, _, stderr = run_cli(capsys, *args)
        assert_refused(code, stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.gguf"]


def test_gguf_context_beyond_memory_is_refused(capsys, smollm2):
    code, _, stderr = run_cli(capsys, "bench", smollm2, "--n-prompt", "1000000")
    assert_refused(code, stderr, contains="KV cache")


@pytest.mark.slow
def test_concurrent_runs_on_one_input_and_one_output(lenet_onnx, tmp_path):
    """Four quantize runs of one input at once all succeed (no shared work file beside the input);
    two runs writing one output at once: exactly one wins, the other is refused with exit 2."""
    model = tmp_path / "lenet.onnx"
    shutil.copy(lenet_onnx, model)
    cli = [
        sys.executable,
        "-P",
        "-c",
        "from edgeinfer.cli import main; main()",
        "quantize",
        str(model),
        "--method",
        "dynamic",
    ]
    procs = [
        subprocess.Popen(
            [*cli, "-o", str(tmp_path / f"q{i}.onnx")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(4)
    ]
    procs += [
        subprocess.Popen(
            [*cli, "-o", str(tmp_path / "same.onnx")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert [code for code, _ in results[:4]] == [0, 0, 0, 0], results[:4]
    same = sorted(code for code, _ in results[4:])
    assert same == [0, 2], results[4:]
    # The loser says why: the other run holds the output, wrote it meanwhile, or (when the two did not
    # overlap after all: start-up alone takes longer than a quantize) had already written it.
    said = results[4][1] + results[5][1]
    assert "another edgeinfer run" in said or "meanwhile" in said or "exists; pass --force" in said, said
    side = json.loads((tmp_path / "same.onnx.edgeinfer.json").read_text())
    from edgeinfer.core.io import sha256_file

    assert side["sha256"] == sha256_file(tmp_path / "same.onnx")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or "inferred" in p.name]


@pytest.mark.parametrize("item_type, count", [(0, 2**40), (8, 2**31), (9, 2**20)])
def test_gguf_with_a_huge_array_count_is_refused_without_allocating(capsys, tmp_path, item_type, count):
    """gguf-py's reader would loop and allocate until killed (found by fuzzing); the scan refuses first."""
    import time

    key = b"tokenizer.ggml.tokens"
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
    header += struct.pack("<IIQ", 9, item_type, count) + b"\0" * 64
    model = tmp_path / "huge.gguf"
    model.write_bytes(header)
    start = time.perf_counter()
    code, _, stderr = run_cli(capsys, "bench", model)
    assert_refused(code, stderr, contains="corrupt")
    assert time.perf_counter() - start < 10


def _set(index: int, text: str):
    def edit(tokens: list[str]) -> None:
        tokens[index] = text

    return edit


@pytest.mark.parametrize(
    "edit, contains",
    [
        (_set(3 + 0x0F, "<0xZZ>"), "byte tokens"),  # llama.cpp: uncaught std::out_of_range, abort
        (_set(290, "\u2581t3"), "appears twice"),  # llama.cpp: GGML_ASSERT on the token map, abort
        (_set(290, "\u2581t3\0"), "appears twice"),  # the same once llama.cpp stops at the NUL
    ],
)
def test_gguf_vocabularies_that_abort_llama_cpp_are_refused_first(capsys, tmp_path, edit, contains):
    """Both were found by benchmarks/fuzz.py: llama.cpp killed the whole process on these files."""
    from tests.fuzzing import tiny_llama_gguf

    model = tiny_llama_gguf(tmp_path / "vocab.gguf", edit)
    code, _, stderr = run_cli(capsys, "run", model, "--prompt", "t1 t2", "--max-tokens", "2")
    assert_refused(code, stderr, contains=contains)


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EROFS", "EACCES"])
def test_a_full_disk_or_read_only_folder_is_one_line_and_exit_2(capsys, lenet_onnx, tmp_path, monkeypatch, errno_name):
    import errno
    import os

    import edgeinfer.core.io

    def refuse(*args, **kwargs):
        raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)), str(tmp_path / "q.onnx"))

    monkeypatch.setattr(edgeinfer.core.io.os, "replace", refuse)  # where an output is put in place
    code, _, stderr = run_cli(capsys, "quantize", lenet_onnx, "-o", tmp_path / "q.onnx", "--method", "dynamic")
    assert_refused(code, stderr, contains=os.strerror(getattr(errno, errno_name)))
    assert "nothing was written" in stderr and not (tmp_path / "q.onnx").exists()
