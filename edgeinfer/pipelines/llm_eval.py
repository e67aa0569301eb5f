"""LLM quality against a baseline: perplexity, KL divergence and top-1 agreement on the same tokens.

The baseline's log-probabilities are computed once into a logits file (.npz: tokens, window,
targets, fp16 log-probs, sha256 of model and text) and reused for every candidate. The file
holds plain token ids, so any runtime (a later ONNX LLM too) can be scored on the same tokens.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.errors import InputError
from edgeinfer.core.progress import QUIET, Progress

LOGITS_SCHEMA = 1

log = logging.getLogger(__name__)


@dataclass
class LlmRow:
    """One GGUF model scored against the baseline's log-probs on the same tokens, and timed.

    Args:
        model: the GGUF path; architecture ... file_size_bytes: read from its header.
        perplexity, scored_tokens: on the text's scored positions.
        kl_mean, kl_p99, top1_agreement: against the baseline (None for the baseline's own row).
        pp_tokens_per_s, tg_tokens_per_s: prompt processing and generation speed (llama-bench style).
        peak_memory_mb: peak resident MiB of a fresh process that loads it and evaluates a prompt
            of the scoring window's length (None when not measured).
    """

    model: str
    architecture: str
    parameters: int
    bits_per_weight: float
    context_length: int | None
    tensor_types: dict[str, int]
    file_size_bytes: int
    perplexity: float
    scored_tokens: int
    pp_tokens_per_s: float
    tg_tokens_per_s: float
    kl_mean: float | None = None
    kl_p99: float | None = None
    top1_agreement: float | None = None
    peak_memory_mb: float | None = None
    kv_type: str | None = None  # a candidate's KV-cache type when not f16: part of its name

    @property
    def name(self) -> str:
        """The file's name; with its KV-cache type when that is not f16, so `compare a.gguf a.gguf
        --kv-type q4_0` shows two rows that say which is which."""
        name = Path(self.model).name
        return f"{name} (KV {self.kv_type})" if self.kv_type not in (None, "f16") else name

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v for k, v in asdict(self).items() if v is not None or not k.startswith(("kl_", "top1", "peak_", "kv_"))
        }

    def figures(self) -> list[str]:
        """bpw, pp and tg tokens/s, peak MiB, perplexity, KL mean and p99, top-1, as tables print them."""

        def maybe(value: float | None, spec: str) -> str:
            return format(value, spec) if value is not None else "-"

        return [
            f"{self.bits_per_weight:.2f}",
            f"{self.pp_tokens_per_s:.0f}",
            f"{self.tg_tokens_per_s:.1f}",
            maybe(self.peak_memory_mb, ".0f"),
            f"{self.perplexity:.3f}",
            maybe(None if self.kl_mean is None else max(self.kl_mean, 0.0), ".4f"),  # fp16 rounding: never "-0.0000"
            maybe(self.kl_p99, ".4f"),
            maybe(self.top1_agreement, ".3f"),
        ]


@dataclass
class LlmComparisonReport:
    """`compare` on GGUF models, one row a model, the baseline first; `to_dict()` is the `--json`
    output (schema 1)."""

    text: str
    window: int
    tokens: int
    rows: list[LlmRow] = field(default_factory=list)
    schema: int = 1

    @property
    def candidates(self) -> list[LlmRow]:
        return self.rows[1:]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "text": self.text,
            "window": self.window,
            "tokens": self.tokens,
            "rows": [r.to_dict() for r in self.rows],
        }


def _text_tokens(runner, text: str, max_tokens: int) -> list[int]:
    tokens = runner.tokenize(text)
    return tokens[:max_tokens]


def baseline_logits(
    baseline: Path,
    text: Path,
    window: int,
    max_tokens: int,
    logits_file: Path | None,
    threads: int | None = None,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    from edgeinfer.core.cache import cache_dir
    from edgeinfer.core.formats import load_npz, read_text_file
    from edgeinfer.core.io import atomic_path, sha256_file
    from edgeinfer.pipelines.deploy.bundle import sourcesha256_file
    from edgeinfer.pipelines.target import gguf_runner
    from edgeinfer.runtime.genai import is_genai_folder
    from edgeinfer.runtime.llama import LlamaSettings

    content = read_text_file(text)  # a text that is not UTF-8 is refused before any model loads
    genai = is_genai_folder(baseline)  # an ONNX Runtime GenAI folder: its files, hashed by name and bytes
    model_sha = (sourcesha256_file(str(baseline)) or "") if genai else sha256_file(baseline)
    text_sha = hashlib.sha256(text.read_bytes()).hexdigest()
    from edgeinfer.core.cache import enforce_cap, touch

    path = logits_file or cache_dir() / "logits" / f"{model_sha[:16]}-{text_sha[:16]}-w{window}-n{max_tokens}.npz"
    if path.exists():
        ref = load_npz(path, "logits file")
        keys = {"tokens", "window", "targets", "log_probs", "model_sha256", "text_sha256"}
        if keys <= set(ref) and str(ref["model_sha256"]) == model_sha and str(ref["text_sha256"]) == text_sha:
            log.info(f"baseline log-probs reused from {path}")
            touch(path)
            return ref
        if logits_file:
            raise InputError(
                f"logits file {path} was made from another model or text (or is not a logits file); "
                "delete it or choose another"
            )
    progress.stage(f"computing the baseline's log-probs once ({baseline.name})")
    if genai:
        from edgeinfer.core.model_kind import ModelKind
        from edgeinfer.runtime import load

        runner: Any = load(baseline, expect=ModelKind.GENAI)
    else:
        runner = gguf_runner(baseline, LlamaSettings(n_ctx=window, threads=threads), logits_all=True)
    tokens = _text_tokens(runner, content, max_tokens)
    logp, targets = runner.log_probs(tokens, window)
    ref = {
        "schema": np.int64(LOGITS_SCHEMA),
        "tokens": np.asarray(tokens, np.int64),
        "window": np.int64(window),
        "targets": targets.astype(np.int64),
        "log_probs": logp.astype(np.float16),
        "model_sha256": np.str_(model_sha),
        "text_sha256": np.str_(text_sha),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **ref)
    log.info(
        f"baseline log-probs kept in {path} ({path.stat().st_size / 2**20:.1f} MiB; reused by later compares, "
        "--logits chooses the file)"
    )
    if logits_file is None:
        enforce_cap(keep=path)
    return ref


def agreement(base: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    """KL(base || cand) mean and p99, and top-1 agreement, of two [positions, vocab] log-prob arrays."""
    kl = (np.exp(base) * (base - cand)).sum(axis=1)
    return {
        "kl_mean": float(kl.mean()),
        "kl_p99": float(np.percentile(kl, 99)),
        "top1_agreement": float((base.argmax(1) == cand.argmax(1)).mean()),
    }


def score(logp: np.ndarray, targets: np.ndarray, ref: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """Perplexity of `logp`; with a reference, KL(ref || cand) mean and p99 and top-1 agreement."""
    nll = -logp[np.arange(len(targets)), targets]
    out = {"perplexity": float(np.exp(nll.mean())), "scored_tokens": int(len(targets))}
    if ref is not None:
        base = ref["log_probs"].astype(np.float32)
        if base.shape != logp.shape:
            raise InputError(
                f"candidate vocabulary/positions {logp.shape} differ from the baseline's {base.shape}; "
                "only models with the same tokenizer can be compared"
            )
        out.update(agreement(base, logp))
    return out


def compare_llms(
    baseline: Path,
    candidates: list[Path],
    text: Path,
    *,
    window: int = 256,
    max_tokens: int = 1024,
    logits_file: Path | None = None,
    threads: int | None = None,
    n_prompt: int = 128,
    n_gen: int = 32,
    reps: int = 2,
    memory: bool = True,
    kv_type: str = "f16",
    progress: Progress = QUIET,
) -> LlmComparisonReport:
    """Score the baseline and each candidate GGUF on the same token windows of `text`, and time them.

    Args:
        baseline, candidates: GGUF files sharing one tokenizer; a candidate may also be an ONNX
            Runtime GenAI folder (`export HF_DIR -o DIR`) of the same model.
        text: the text to score; window, max_tokens: the window length and the tokens used.
        logits_file: where the baseline's log-probs are kept (default: the cache), reused when it matches.
        threads, n_prompt, n_gen, reps: the llama.cpp threads and the timing run.
        memory: also measure each model's peak memory in a fresh process.
        kv_type: the candidates' KV-cache type (the baseline's log-probs come from an f16 cache),
            so `compare M.gguf M.gguf --kv-type q4_0` measures what a quantized cache costs.
    """
    from edgeinfer.core.measure import apply_measurement_env

    apply_measurement_env()  # before torch or llama.cpp loads: OpenMP reads it once
    from edgeinfer.core.gguf_types import KvType
    from edgeinfer.core.model_kind import ModelKind
    from edgeinfer.pipelines.target import gguf_runner
    from edgeinfer.runtime import load
    from edgeinfer.runtime.genai import genai_summary, is_genai_folder
    from edgeinfer.runtime.llama import LlamaSettings, gguf_summary

    ref = baseline_logits(baseline, text, window, max_tokens, logits_file, threads, progress)
    tokens = [int(t) for t in ref["tokens"]]
    rows = []
    for i, model in enumerate([baseline, *candidates]):
        is_base = i == 0  # the baseline may also be listed as a candidate: it is then scored like one
        progress.stage(f"scoring {model.name}")
        # An ONNX Runtime GenAI folder is scored on the baseline's token ids like any GGUF.
        onnx_llm = is_genai_folder(model)
        settings = LlamaSettings(
            n_ctx=max(window, n_prompt + n_gen), threads=threads, kv_type=KvType.F16 if is_base else KvType(kv_type)
        )
        runner: Any = (
            load(model, expect=ModelKind.GENAI) if onnx_llm else gguf_runner(model, settings, logits_all=not is_base)
        )
        if is_base:  # its log-probs are the reference itself
            figures = score(ref["log_probs"].astype(np.float32), ref["targets"], None)
        else:
            logp, targets = runner.log_probs(tokens, int(ref["window"]))
            figures = score(logp, targets, ref)
        progress.stage(f"timing {model.name} (pp{n_prompt} / tg{n_gen})")
        speed = runner.bench(n_prompt, n_gen, reps)
        del runner
        peak = None
        if memory:
            from edgeinfer.pipelines.optimize.measurements import genai_peak_memory_mb, gguf_peak_memory_mb

            progress.stage(f"peak memory of {model.name} (fresh process)")
            if onnx_llm:
                peak = genai_peak_memory_mb(model, window)
            else:  # at the context the scoring and timing above used
                peak = gguf_peak_memory_mb(model, settings, window - 8)
        rows.append(
            LlmRow(
                model=str(model),
                **(genai_summary(model) if onnx_llm else gguf_summary(model)),
                **figures,
                pp_tokens_per_s=speed["pp_tokens_per_s"],
                tg_tokens_per_s=speed["tg_tokens_per_s"],
                peak_memory_mb=peak,
                kv_type=None if is_base or onnx_llm else kv_type,
            )
        )
    return LlmComparisonReport(text=str(text), window=int(ref["window"]), tokens=len(tokens), rows=rows)
