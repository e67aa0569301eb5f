"""The commands that take any kind of model (quantize, compare, check), as one config-first
function each: the model's kind is recognised once (core.model_kind) and each kind's pipeline runs;
the result's type says what was done, so the CLI renders by type and never looks at a file.

Options that would do nothing for the model given are refused (exit 2), naming what they apply to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeinfer.core.artifact import Artifact
from edgeinfer.core.errors import ConfigError, option, refuse_options
from edgeinfer.core.model_kind import ModelKind, model_kind
from edgeinfer.core.progress import QUIET, Progress

if TYPE_CHECKING:
    from edgeinfer.pipelines.compare import ComparisonReport
    from edgeinfer.pipelines.export_genai import GenAiExport
    from edgeinfer.pipelines.llm_eval import LlmComparisonReport
    from edgeinfer.pipelines.seq2seq_eval import Seq2SeqComparison


@dataclass(frozen=True)
class QuantizeRequest:
    """What `edgeinfer quantize` was asked: the method (ONNX: dynamic, static, int4, fp16; GGUF: a
    llama.cpp type; None: the default for the model and device) and the options of each kind.
    ONNX only: calib_samples ... max_drop (see pipelines.quantize.quantize_model); GGUF only: imatrix;
    calib is ONNX calibration data, or for a GGUF the text an importance matrix is computed on."""

    method: str | None = None
    calib: str | None = None
    calib_method: str = "minmax"
    calib_samples: int | None = None
    batch_size: int = 8
    activation_type: str | None = None
    weight_type: str | None = None
    per_channel: bool | None = None
    symmetric: bool = False
    reduce_range: bool | None = None
    exclude: tuple[str, ...] = ()
    block_size: int | None = None  # int4: 128 for an ONNX model, 32 for a GenAI folder (an LLM)
    eval_data: str | None = None
    report: bool = False
    max_drop: float | None = None
    imatrix: Path | None = None
    runs: int = 30
    force: bool = False

    def onnx_only(self) -> dict[str, Any]:
        """The ONNX options the user set (defaults left out), for refusing them elsewhere."""
        keys = ("calib", "calib_samples", "activation_type", "weight_type", "per_channel", "reduce_range",
                "exclude", "eval_data", "report", "max_drop", "symmetric")  # fmt: skip
        return {k: getattr(self, k) for k in keys}


@dataclass
class Quantized:
    """A quantized ONNX model or GGUF: its artifact and what was measured (for ONNX the comparison
    with its parent, SQNR rows and the keep-in-float search; for GGUF the tensor types before and
    after). `kind` says which; figures is the --json beside the output and config."""

    kind: ModelKind
    artifact: Artifact
    figures: dict[str, Any]


def quantize_any(
    model: Path, output: Path, request: QuantizeRequest = QuantizeRequest(), *, profile=None,
    progress: Progress = QUIET,
) -> Quantized | Seq2SeqComparison | GenAiExport:  # fmt: skip
    """Quantize any model edgeinfer quantizes: an ONNX model (compared with its parent), a float
    ONNX Runtime GenAI folder (edgeinfer's INT4 recipe, held to the folder's own log-probs), a GGUF
    (llama.cpp's k-quants, default the profile's llm.kquant) or an encoder-decoder folder (both
    parts, compared token for token with the float folder)."""
    kind = model_kind(model)
    if kind is ModelKind.SEQ2SEQ:
        from edgeinfer.pipelines.seq2seq_eval import quantize_seq2seq

        refuse_options({**request.onnx_only(), "imatrix": request.imatrix}, "single ONNX models", kind.one)
        method = request.method or "dynamic"
        return quantize_seq2seq(model, output, method, force=request.force, progress=progress)
    if kind is ModelKind.GGUF:
        from edgeinfer.pipelines.llm import quantize_gguf_model

        onnx_options = {k: v for k, v in request.onnx_only().items() if k != "calib"}
        refuse_options(
            onnx_options, "ONNX models", "a GGUF LLM (llama.cpp's k-quants take --method, --calib TEXT and --imatrix)"
        )
        progress.stage("llama.cpp quantizing")
        art, figures = quantize_gguf_model(
            model,
            output,
            request.method,
            profile=profile,
            calib=Path(request.calib) if request.calib else None,
            imatrix=request.imatrix,
            force=request.force,
            progress=progress,
        )
        return Quantized(kind, art, figures)
    if kind is ModelKind.GENAI:
        from edgeinfer.pipelines.export_genai import quantize_genai

        onnx_options = {k: v for k, v in request.onnx_only().items() if k != "calib"}
        refuse_options({**onnx_options, "imatrix": request.imatrix}, "single ONNX models or GGUF LLMs", kind.one)
        if (request.method or "int4").lower() != "int4":
            raise ConfigError(f"a GenAI folder is quantized to int4 (edgeinfer's recipe), not {request.method}")
        return quantize_genai(
            model, output, calib=Path(request.calib) if request.calib else None, block_size=request.block_size or 32,
            force=request.force, progress=progress,
        )  # fmt: skip
    if kind is not ModelKind.ONNX:
        raise ConfigError(
            f"quantize takes ONNX models, GGUF LLMs, GenAI folders and encoder-decoder folders, not {kind.one}"
        )
    from edgeinfer.pipelines.quantize import quantize_model

    refuse_options({"imatrix": request.imatrix}, "GGUF LLMs", kind.one)
    options = {k: v for k, v in asdict(request).items() if k not in ("imatrix", "exclude", "method")}
    options["report"] = request.report or request.max_drop is not None
    options["block_size"] = request.block_size or 128
    art, figures = quantize_model(
        model, output, method=request.method or "dynamic", exclude=list(request.exclude), profile=profile,
        progress=progress, **options,
    )  # fmt: skip
    return Quantized(kind, art, figures)


@dataclass(frozen=True)
class CompareRequest:
    """What `edgeinfer compare` and `check` were asked. ONNX: data, task, providers, allow_fallback,
    batch_size, limit; GGUF: text, kv_type, window, max_tokens, logits; encoder-decoder: text or
    audio, limit; runs for every kind that times interleaved."""

    data: str | None = None
    text: Path | None = None
    audio: Path | None = None
    task: str = "auto"
    providers: tuple[Any, ...] | None = None
    allow_fallback: bool = False
    runs: int = 30
    batch_size: int = 8
    limit: int | None = None
    kv_type: str = "f16"
    window: int = 256
    max_tokens: int = 1024
    logits: Path | None = None


def compare_any(
    baseline: Path, candidates: list[Path], request: CompareRequest = CompareRequest(), *, profile=None,
    progress: Progress = QUIET,
) -> ComparisonReport | LlmComparisonReport | Seq2SeqComparison:  # fmt: skip
    """Compare candidates with their baseline on the measures of its kind: ONNX models on `data`
    (task metric, interleaved latency), GGUF LLMs on `text` (KL, top-1, perplexity, pp/tg), encoder-
    decoder folders by greedy generation (agreement, WER, tokens/s)."""
    kind = model_kind(baseline)
    if kind is ModelKind.SEQ2SEQ:
        from edgeinfer.pipelines.seq2seq_eval import compare_seq2seq

        return compare_seq2seq(
            baseline, candidates, request.text, audio=request.audio, limit=request.limit or 32, progress=progress
        )
    if kind in (ModelKind.GGUF, ModelKind.GENAI):  # LLMs: scored on text, in one table across formats
        from edgeinfer.pipelines.llm import compare_gguf

        return compare_gguf(
            baseline, candidates, request.text, window=request.window, max_tokens=request.max_tokens,
            logits=request.logits, kv_type=request.kv_type, progress=progress,
        )  # fmt: skip
    if kind is not ModelKind.ONNX:
        raise ConfigError(
            f"compare takes a baseline .onnx, .gguf, ONNX Runtime GenAI or encoder-decoder folder, not {kind.one}"
        )
    if not request.data:
        raise ConfigError(f"comparing ONNX models needs evaluation data: pass {option('data')}")
    from edgeinfer.core.errors import parse_choice
    from edgeinfer.pipelines.compare import EvalTask, compare_models

    return compare_models(
        baseline, candidates, request.data, task=parse_choice(EvalTask, request.task, "task"), device=profile,
        providers=list(request.providers) if request.providers else None, allow_fallback=request.allow_fallback,
        runs=request.runs, batch_size=request.batch_size, limit=request.limit, progress=progress,
    )  # fmt: skip


@dataclass(frozen=True)
class ExportRequest:
    """What `edgeinfer export` was asked (pipelines.export.export_model's options); precision,
    block_size, calib and int4_recipe are for ONNX Runtime GenAI folders (an output without a
    suffix from a causal LM)."""

    task: str | None = None
    opset: int | None = None
    exporter: str = "auto"
    static_shapes: bool = False
    atol: float | None = None
    format: str | None = None
    outtype: str | None = None
    adapter: str | None = None
    check_tokens: int = 256
    allow_new_head: bool = False
    image_size: str | None = None
    allow_constant_outputs: bool = False
    precision: str = "int4"
    block_size: int = 32
    calib: Path | None = None
    int4_recipe: str = "edgeinfer"
    force: bool = False
    trust_source: bool = False


def export_any(
    source: str, output: Path, request: ExportRequest = ExportRequest(), *, profile=None, progress: Progress = QUIET
) -> Artifact | Any:
    """Export `source` to what `output` names: an .onnx or .gguf file (export_model, validated against
    the source), or a folder (no suffix): an encoder-decoder with its KV cache (Seq2SeqExport) or an
    LLM for ONNX Runtime GenAI (GenAiExport)."""
    from edgeinfer.pipelines.export_genai import is_causal_lm_source
    from edgeinfer.pipelines.export_seq2seq import is_seq2seq_source

    r = request
    if not Path(output).suffix and is_seq2seq_source(source, r.task):
        from edgeinfer.pipelines.export_seq2seq import export_encoder_decoder

        return export_encoder_decoder(
            source, output, opset=r.opset, exporter=r.exporter, atol=r.atol, allow_new_head=r.allow_new_head,
            task=r.task, force=r.force, progress=progress,
        )  # fmt: skip
    if not Path(output).suffix and r.task in (None, "causal-lm") and is_causal_lm_source(source):
        from edgeinfer.pipelines.export_genai import export_genai

        return export_genai(
            source, output, precision=r.precision, block_size=r.block_size, check_tokens=r.check_tokens,
            calib=r.calib, recipe=r.int4_recipe, force=r.force, progress=progress,
        )  # fmt: skip
    from edgeinfer.pipelines.export import export_model

    if r.calib is not None:
        raise ConfigError("--calib applies to LLMs exported to an ONNX Runtime GenAI folder (an output with no suffix)")
    options = {k: v for k, v in asdict(r).items() if k not in ("precision", "block_size", "calib", "int4_recipe")}
    return export_model(source, output, profile=profile, progress=progress, **options)
