"""Bounded mutation fuzzing (a few hundred cases, well under a minute): every mutated GGUF, ONNX
and safetensors file is accepted or refused with an EdgeInferError; nothing else escapes, and
llama.cpp never crashes on a GGUF that edgeinfer's own check let through."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeinfer.core.errors import EdgeInferError
from tests import fuzzing

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, lenet_onnx):
    root = tmp_path_factory.mktemp("fuzz-seeds")
    gguf = fuzzing.tiny_llama_gguf(root / "tiny.gguf")
    st_file = fuzzing.tiny_safetensors(root / "tiny.safetensors")
    return {
        "gguf": (gguf.read_bytes(), fuzzing.gguf_header_length(gguf)),
        "onnx": (lenet_onnx.read_bytes(), 4096),
        "safetensors": (st_file.read_bytes(), fuzzing.safetensors_header_length(st_file)),
        "accepted_gguf": root / "accepted",
    }


def _check(feed, suffix: str, data: bytes) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{suffix}"
        path.write_bytes(data)
        try:
            return feed(path)
        except EdgeInferError:
            return False


def test_mutated_gguf_headers_are_refused_or_loaded_safely(seeds):
    data, region = seeds["gguf"]
    accepted = seeds["accepted_gguf"]
    accepted.mkdir(exist_ok=True)
    counts = {"accepted": 0, "refused": 0}

    @FUZZ
    @given(ops=fuzzing.mutations(st, len(data), region))
    def run(ops):
        mutated = fuzzing.apply(data, ops)
        ok = _check(fuzzing.feed_gguf, ".gguf", mutated)
        counts["accepted" if ok else "refused"] += 1
        if ok and mutated != data and counts["accepted"] <= 40:
            (accepted / f"case{counts['accepted']:03d}.gguf").write_bytes(mutated)

    run()
    assert counts["refused"] > 0 and sum(counts.values()) >= 100
    # What edgeinfer accepted goes to llama.cpp, in a child process: a crash there is a finding.
    proc = subprocess.run(
        [sys.executable, "-c", fuzzing.LLAMA_LOAD_SCRIPT, str(accepted)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (
        f"llama.cpp crashed (signal {-proc.returncode}) on an accepted GGUF: {proc.stderr[-500:]}"
    )
    shutil.rmtree(accepted)


@pytest.mark.parametrize(
    "kind, suffix, feed",
    [("onnx", ".onnx", fuzzing.feed_onnx), ("safetensors", ".safetensors", fuzzing.feed_safetensors)],
)
def test_mutated_onnx_and_safetensors_are_refused_or_loaded_safely(seeds, kind, suffix, feed):
    data, region = seeds[kind]
    counts = {"accepted": 0, "refused": 0}

    @FUZZ
    @given(ops=fuzzing.mutations(st, len(data), region))
    def run(ops):
        ok = _check(feed, suffix, fuzzing.apply(data, ops))
        counts["accepted" if ok else "refused"] += 1

    run()
    assert counts["refused"] > 0 and sum(counts.values()) >= 100
