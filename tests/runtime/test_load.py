"""edgeinfer.runtime.load: one entry point for every backend; the model's kind is recognised once
(core.model_kind), options a backend would ignore are refused, and a new backend is one registration."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.core.errors import ConfigError
from edgeinfer.core.model_kind import GENAI_CONFIG, GENERATION, ModelKind, model_kind
from edgeinfer.runtime import Backend, GenerationStats, Runner, Target, load, register_backend


def test_the_kind_of_every_model_is_recognised_in_one_place(tmp_path, lenet_onnx):
    genai, seq2seq = tmp_path / "genai", tmp_path / "s2s"
    for folder, marker in ((genai, GENAI_CONFIG), (seq2seq, GENERATION)):
        folder.mkdir()
        (folder / marker).write_text("{}")
    assert [model_kind(p) for p in (lenet_onnx, tmp_path / "m.GGUF", genai, seq2seq)] == [
        ModelKind.ONNX, ModelKind.GGUF, ModelKind.GENAI, ModelKind.SEQ2SEQ,
    ]  # fmt: skip


def test_an_onnx_model_loads_runs_and_reports_what_ran(lenet_onnx):
    runner = load(lenet_onnx, Target(threads=1))
    assert isinstance(runner, Runner)
    (name,) = [i.name for i in runner.inputs]
    out = runner.run({name: np.zeros((2, 1, 32, 32), np.float32)})
    assert next(iter(out.values())).shape == (2, 10)
    assert runner.report.used == ["CPUExecutionProvider"]
    runner.close()


def test_a_gguf_llm_streams_pieces_then_one_stats_item(smollm2):
    runner = load(smollm2, Target(threads=2, n_ctx=128, kv_type="q8_0"))
    items = list(runner.stream("The capital of France is", max_tokens=4))
    runner.close()
    *pieces, stats = items
    assert all(isinstance(p, str) for p in pieces) and isinstance(stats, GenerationStats)
    assert stats.generated_tokens >= 1 and stats.text == "".join(pieces)
    assert stats.report["used"] and "llama.cpp" in stats.report["used"][0]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (Target(kv_type="q8_0"), "kv_type applies to GGUF LLMs, not to an ONNX model"),
        (Target(repack=True, n_ctx=64), "n_ctx, repack apply to GGUF LLMs, not to an ONNX model"),
        (Target(backend="tensorflow"), "unknown runtime 'tensorflow'"),
        (Target(backend="llama.cpp"), "the llama.cpp runtime does not load ONNX models"),
    ],
)
def test_options_the_backend_would_ignore_are_refused(lenet_onnx, target, message):
    with pytest.raises(ConfigError, match=message):
        load(lenet_onnx, target)


def test_providers_are_refused_for_a_gguf_llm(smollm2):
    from edgeinfer.core.providers import Provider

    with pytest.raises(
        ConfigError, match="providers applies to ONNX models and encoder-decoder folders, not to a GGUF"
    ):
        load(smollm2, Target(providers=(Provider.CPU,)))


def test_a_new_backend_is_one_registration_and_is_chosen_by_name(lenet_onnx):
    """What one new file in runtime/ does on import (an OpenVINO or remote runner): register a
    backend for a kind, ranked after the default; Target(backend=...) then loads through it."""
    from edgeinfer.runtime import _BACKENDS
    from edgeinfer.runtime.ort import OrtRunner

    class OneThread(OrtRunner):
        pass

    register_backend(
        Backend("one-thread", (ModelKind.ONNX,), frozenset({"threads"}), lambda p, t: OneThread(p, threads=1), rank=1)
    )
    try:
        assert type(load(lenet_onnx)) is OrtRunner  # the default for ONNX is unchanged
        assert type(load(lenet_onnx, Target(backend="one-thread"))) is OneThread
        with pytest.raises(ConfigError, match="allow_fallback applies to"):
            load(lenet_onnx, Target(backend="one-thread", allow_fallback=True))
    finally:
        _BACKENDS._entries.pop("one-thread", None)
