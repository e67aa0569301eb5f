"""GGUF LLMs on llama.cpp: settings from a device profile, generation, pp/tg benchmarks, k-quant
quantization with its sidecar, and the quality gate. The CLI only renders what these return."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeinfer.core.artifact import Artifact, Step, load_artifact
from edgeinfer.core.errors import ConfigError, InputError, option, parse_choice
from edgeinfer.core.io import atomic_path, check_output
from edgeinfer.core.progress import QUIET, Progress

if TYPE_CHECKING:
    from edgeinfer.compress.gguf_quant import GgufQuantConfig
    from edgeinfer.pipelines.llm_eval import LlmComparisonReport

log = logging.getLogger(__name__)


def llama_settings(
    profile=None,
    *,
    threads: int | None = None,
    n_ctx: int | None = None,
    gpu_layers: int | None = None,
    allow_fallback: bool = False,
    kv_type: str | None = None,
    repack: bool | None = None,
):
    """LlamaSettings from explicit values, else the profile's `[llm]` table (devices.LlmDefaults,
    where the defaults live) and threads, merged by pipelines.target.with_profile as for every
    other runtime; every command that loads a GGUF and optimize's LLM search go through it."""
    from edgeinfer.core.gguf_types import KvType
    from edgeinfer.core.model_kind import ModelKind
    from edgeinfer.pipelines.target import with_profile
    from edgeinfer.runtime import Target, backend_for
    from edgeinfer.runtime.llama import settings_from_target

    given = Target(
        threads=threads or None,
        allow_fallback=allow_fallback,
        n_ctx=n_ctx or None,
        gpu_layers=gpu_layers,
        kv_type=parse_choice(KvType, kv_type, option("kv_type")) if kv_type else None,
        repack=repack,
    )
    return settings_from_target(with_profile(given, profile, backend_for(ModelKind.GGUF).takes))


def fit_gguf(model: Path, settings, profile=None, *, measure: bool = False) -> dict[str, Any]:
    """Will `model` fit at `settings.n_ctx`? Memory read off the GGUF header before loading
    (runtime.llama.memory_estimate), plus the Python runtime as a fresh interpreter measures it,
    against the profile's `memory_mb` (else this machine's free memory). With `measure`, the
    real peak of a fresh process that loads it and evaluates a prompt, and the estimate's error."""
    import psutil

    from edgeinfer.pipelines.optimize.measurements import gguf_peak_memory_mb, interpreter_memory_mb
    from edgeinfer.runtime.llama import check_llm_file, memory_estimate

    check_llm_file(Path(model), settings.n_ctx, settings.kv_type)
    parts = {k: v / 2**20 for k, v in memory_estimate(Path(model), settings.n_ctx, settings.kv_type).items()}
    parts["runtime"] = interpreter_memory_mb()
    total = sum(parts.values())
    budget = float(profile.memory_mb) if profile and profile.memory_mb else psutil.virtual_memory().available / 2**20
    out: dict[str, Any] = {
        "model": str(model),
        "n_ctx": settings.n_ctx,
        "kv_type": settings.kv_type,
        "parts_mb": {k: round(v, 1) for k, v in parts.items()},
        "estimate_mb": round(total, 1),
        "budget_mb": round(budget, 1),
        "budget_from": f"{profile.name} memory_mb" if profile and profile.memory_mb else "free memory now",
        "fits": total <= budget,
        "trained_context": trained_context(Path(model)),
    }
    trained = out["trained_context"]
    if trained and settings.n_ctx > trained:
        out["warning"] = (
            f"the model was trained for a context of {trained:,} tokens; past that its output degrades "
            "(memory fitting is not quality)"
        )
    if measure:
        n_prompt = min(settings.n_ctx, 512) - 8
        peak = gguf_peak_memory_mb(Path(model), settings, n_prompt)
        out["measured_peak_mb"] = round(peak, 1)
        out["estimate_error"] = round(total / peak - 1, 4)
    return out


def trained_context(model: Path) -> int | None:
    """The context length a GGUF records that its model was trained for (`ARCH.context_length`)."""
    from edgeinfer.core.formats import gguf_int, gguf_string, open_gguf

    reader = open_gguf(model)
    arch = gguf_string(reader, "general.architecture")
    return gguf_int(reader, f"{arch}.context_length") if arch else None


def open_chat(model: Path, target, profile=None, chat_format: str | None = None) -> Any:
    """The runner `edgeinfer chat` talks to: a GGUF LLM (chat needs the model's own chat template),
    loaded through edgeinfer.runtime.load with the profile's [llm] table under the user's options.
    A GGUF without a template is refused unless `chat_format` names one of llama-cpp-python's
    built-in formats: llama.cpp would format the chat as Llama 2's [INST] and the model, trained
    on another format, answers nothing or nonsense."""
    from edgeinfer.core.model_kind import ModelKind, model_kind
    from edgeinfer.pipelines.target import resolve_target
    from edgeinfer.runtime import load

    kind = model_kind(model)
    if kind is not ModelKind.GGUF:
        raise ConfigError(f"chat takes a GGUF LLM (it applies the model's chat template), not {kind.one}")
    if chat_format:
        from edgeinfer.runtime.llama import check_chat_format

        check_chat_format(chat_format)  # before the model loads
    runner: Any = load(model, resolve_target(model, profile, target))  # a LlamaRunner: the kind is GGUF
    if chat_format:
        runner.use_chat_format(chat_format)
    elif runner.chat_template is None:
        from edgeinfer.runtime.llama import no_chat_template

        raise InputError(no_chat_template(Path(model)))
    return runner


def generate(
    model: Path, settings, *, prompt: str | None = None, messages: list[dict] | None = None, max_tokens: int = 128
) -> tuple[Any, Iterator]:
    """(runner, stream): text pieces as llama.cpp produces them, then a GenerationStats."""
    from edgeinfer.pipelines.target import gguf_runner

    if prompt is None and messages is None:
        raise ConfigError("GGUF models need a prompt (or use `edgeinfer chat`)")
    runner = gguf_runner(model, settings)
    return runner, runner.stream(prompt=prompt, messages=messages, max_tokens=max_tokens)


def bench_gguf(
    model: Path, settings, *, n_prompt: int = 512, n_gen: int = 128, reps: int = 3, profile=None
) -> dict[str, Any]:
    """Prompt processing and generation tokens per second (like llama-bench), with the file's summary."""
    from edgeinfer.core.measure import apply_measurement_env

    apply_measurement_env()  # before torch or llama.cpp loads: OpenMP reads it once
    from dataclasses import replace

    from edgeinfer.core.measure import peak_rss_mb
    from edgeinfer.pipelines.target import gguf_runner
    from edgeinfer.runtime.llama import gguf_summary

    runner = gguf_runner(model, replace(settings, n_ctx=max(settings.n_ctx, n_prompt + n_gen + 8)))
    result = runner.bench(n_prompt, n_gen, reps)
    threads = runner.llm.n_threads
    result.update(
        gguf_summary(model), model=str(model), peak_rss_mb=peak_rss_mb(), backend=runner.report.used, threads=threads
    )
    # The bound at the threads generation ran on: one thread streams less than the whole machine.
    result.update(bandwidth_bound(model, result["tg_tokens_per_s"], threads))
    from edgeinfer.core.limits import check_memory

    check_memory(result["peak_rss_mb"], profile)
    return result


def bandwidth_bound(model: Path, tg_tokens_per_s: float, threads: int | None = None) -> dict[str, float]:
    """Generation on a CPU reads every weight once per token: the machine's read bandwidth over the
    bytes per token bounds the speed. Returns the bandwidth, the bytes, the bound and the share reached
    (the KV cache read is left out: small at bench's context)."""
    from edgeinfer.core.measure import read_bandwidth_gb_s
    from edgeinfer.runtime.llama import bytes_per_token

    bandwidth = read_bandwidth_gb_s(threads=threads)
    per_token = bytes_per_token(model)
    bound = bandwidth * 1e9 / per_token
    return {
        "read_bandwidth_gb_s": bandwidth,
        "bytes_per_token": per_token,
        "bandwidth_bound_tokens_per_s": bound,
        "share_of_bound": tg_tokens_per_s / bound,
    }


def quantize_gguf_model(
    model: Path,
    output: Path,
    method: str | None,
    *,
    profile=None,
    calib: Path | None = None,
    imatrix: Path | None = None,
    force: bool = False,
    progress: Progress = QUIET,
) -> tuple[Artifact, dict[str, Any]]:
    """llama.cpp quantization to `method` (default: the profile's `llm.kquant`, else Q4_K_M), recorded
    in the sidecar with the tensor types before and after.

    With `calib` (a text) or `imatrix` (llama.cpp's imatrix GGUF) the blocks are weighted by the
    importance of each weight column (pipelines.imatrix), through ggml's own quantizer."""
    from edgeinfer.compress.gguf_quant import GgufQuantConfig
    from edgeinfer.core.gguf_types import GgufType

    if calib is not None and imatrix is not None:
        raise ConfigError("give --calib TEXT (edgeinfer computes the importance matrix) or --imatrix FILE, not both")
    if method is None:
        from edgeinfer.devices import LlmDefaults

        kquant = (profile.llm if profile else LlmDefaults()).kquant
    else:
        kquant = parse_choice(GgufType, method.upper(), "llama.cpp type")
    cfg = GgufQuantConfig(kquant)
    if calib is None and imatrix is None:
        return kquantize(model, output, cfg, force=force)
    if kquant in (GgufType.F32, GgufType.F16, GgufType.BF16):
        raise ConfigError(f"{kquant.value} is not quantized: an importance matrix changes nothing; drop --calib")
    return kquantize(model, output, cfg, force=force, importance=(calib, imatrix), progress=progress)


def _importance(
    model: Path, calib: Path | None, imatrix_file: Path | None, progress: Progress
) -> tuple[Any, dict[str, Any]]:
    """The importance matrix for `model`, and what the sidecar records of it."""
    from edgeinfer.compress.imatrix import read_imatrix
    from edgeinfer.core.io import sha256_file

    if calib is not None:
        from edgeinfer.pipelines.imatrix import importance_matrix

        imatrix, path, cached = importance_matrix(model, calib, progress=progress)
        note = {"calibration_text": Path(calib).name, "text_sha256": sha256_file(Path(calib)), "cached": cached}
    else:
        assert imatrix_file is not None
        imatrix, path = read_imatrix(imatrix_file), Path(imatrix_file)
        note = {"imatrix_file": path.name, "datasets": list(imatrix.datasets)}
    from edgeinfer.pipelines.imatrix import gguf_tensor_names

    shapes = gguf_tensor_names(model)[1]
    unknown = sorted(set(imatrix.entries) - set(shapes))
    if unknown:
        raise ConfigError(
            f"the importance matrix names {len(unknown)} tensor(s) {model.name} does not have ({unknown[0]}, ...): "
            "it was computed for another model"
        )
    for name in imatrix.entries:
        shape = shapes[name]  # ggml order: columns, rows[, experts]
        imatrix.for_tensor(name, shape[0], shape[2] if len(shape) > 2 else 1)  # refuses another model's widths
    note.update(
        {"imatrix_sha256": sha256_file(path), "entries": len(imatrix.entries), "chunks": imatrix.chunk_count,
         "chunk_size": imatrix.chunk_size}
    )  # fmt: skip
    return imatrix, note


def kquantize(
    model: Path,
    output: Path,
    cfg: GgufQuantConfig,
    *,
    force: bool = False,
    importance: tuple[Path | None, Path | None] | None = None,
    progress: Progress = QUIET,
) -> tuple[Artifact, dict]:
    """Quantize a GGUF with llama.cpp to `cfg.type`, recorded in the sidecar with the tensor types
    before and after.

    Args:
        model: the GGUF to quantize (F16/BF16 ideally; a quantized one is requantized, with a warning).
        output: the .gguf to write; cfg: the GgufQuantConfig; force: overwrite an existing output.
        importance: (calibration text, imatrix file), one of them set: llama.cpp chooses the tensor
            types, then every quantized tensor is made again weighted by the importance matrix.

    Returns (the artifact, {output, method, before, after[, importance, tensor_errors]}).
    """
    from edgeinfer.compress.gguf_quant import quantize_gguf
    from edgeinfer.core.io import scratch_dir
    from edgeinfer.runtime.llama import gguf_summary

    model, output = Path(model), Path(output)
    if output.suffix.lower() != ".gguf":
        raise ConfigError(f"llama.cpp quantization writes GGUF: name the output .gguf, not {output.name}")
    check_output(output, [model], force)
    parent = load_artifact(model)
    before = gguf_summary(model)
    imatrix, importance_note = _importance(model, *importance, progress) if importance else (None, {})
    errors = []
    with atomic_path(output, overwrite=force) as tmp:
        if imatrix is None:
            facts = quantize_gguf(model, tmp, cfg)
        else:
            from edgeinfer.compress.gguf_imatrix_quant import requantize

            with scratch_dir("kquant") as scratch:
                plain = scratch / "plain.gguf"
                progress.stage(f"llama.cpp choosing the {cfg.type.value} tensor types")
                facts = quantize_gguf(model, plain, cfg)
                progress.stage("quantizing with importance")
                errors = requantize(model, plain, tmp, imatrix, threads=cfg.threads, progress=progress)
    after = gguf_summary(output)
    note: dict[str, Any] = dict(facts)
    if facts["fallback_tensors"]:
        log.warning(
            f"{facts['fallback_tensors']} tensor(s) have rows that are not multiples of 256, so llama.cpp "
            f"stored them in another type than {cfg.type.value}; that is why the size differs from the type's "
            "nominal bits"
        )
    if before["bits_per_weight"] < 16:
        note["requantized_from"] = sorted(before["tensor_types"])
        log.warning(
            f"{model.name} was already quantized ({', '.join(note['requantized_from'])}); requantizing "
            "compounds the error. Start from an F16/BF16 export when you can."
        )
    if imatrix is not None:
        weighted = sum(e.weighted for e in errors) / max(len(errors), 1)
        plain_error = sum(e.unweighted for e in errors) / max(len(errors), 1)
        note["importance"] = {
            **importance_note,
            "weighted_tensors": sum(e.has_importance for e in errors),
            "quantized_tensors": len(errors),
            "mean_error": weighted,
            "mean_plain_error": plain_error,
        }
    art = parent.derive(
        output,
        Step(
            "quantize",
            {"method": cfg.type.value, **note},
            {k: after[k] for k in ("bits_per_weight", "tensor_types", "file_size_bytes")},
        ),
    )
    art.save()
    figures: dict[str, Any] = {"output": str(output), "method": cfg.type.value, "before": before, "after": after}
    if imatrix is not None:
        figures["importance"] = note["importance"]
        figures["tensor_errors"] = [e.to_dict() for e in errors]
    return art, figures


def compare_gguf(
    baseline: Path,
    candidates: list[Path],
    text: Path | None = None,
    *,
    window: int = 256,
    max_tokens: int = 1024,
    logits: Path | None = None,
    threads: int | None = None,
    kv_type: str = "f16",
    progress: Progress = QUIET,
) -> LlmComparisonReport:
    """Perplexity, KL divergence and top-1 agreement against the baseline, bits per weight, pp/tg speed."""
    from edgeinfer.core.measure import apply_measurement_env

    apply_measurement_env()  # before torch or llama.cpp loads: OpenMP reads it once
    from edgeinfer.examples import SENTENCES
    from edgeinfer.pipelines.llm_eval import compare_llms

    if not candidates:
        raise ConfigError("give at least one candidate model after the baseline")
    from edgeinfer.core.io import require_file
    from edgeinfer.runtime.genai import is_genai_folder

    if not is_genai_folder(baseline):
        require_file(Path(baseline), "baseline model")
    for candidate in candidates:
        if not is_genai_folder(candidate):
            require_file(Path(candidate), "candidate model")
    return compare_llms(
        baseline,
        candidates,
        text or SENTENCES,
        window=window,
        max_tokens=max_tokens,
        logits_file=logits,
        threads=threads,
        kv_type=kv_type,
        progress=progress,
    )
