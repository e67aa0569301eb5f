"""CLI commands for compression and the regression gate: quantize, compare, check, compile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from edgeinfer.cli.app import (
    CliProgress,
    Device,
    Fallback,
    Force,
    Json,
    ProviderOpt,
    app,
    compact_table,
    console,
    err,
    mb,
    resolve_device,
    short_names,
    warn,
)

if TYPE_CHECKING:
    from edgeinfer.pipelines.compare import ComparisonReport


_QuantizeMethod = Annotated[
    Optional[str],
    typer.Option(
        help="ONNX: dynamic (the default; transformers), static (QDQ, needs --calib), int4 (MatMulNBits), fp16. GGUF: a llama.cpp type such as Q4_K_M or Q8_0 (default: the device's llm.kquant, else Q4_K_M)."
    ),
]
_QuantizeCalib = Annotated[
    Optional[str],
    typer.Option(
        help="Calibration data: .npz of input batches, a folder of them, a .txt of sentences (tokenized with the model's tokenizer), or package.module:function yielding dicts. GGUF: a text file; edgeinfer computes its importance matrix (cached) and weights every quantized block by it. A GenAI folder to int4: a text file; each weight's 4-bit damage measured on it places the 8-bit weights, then GPTQ."
    ),
]
_QuantizeCalibSamples = Annotated[Optional[int], typer.Option(min=1, help="Use at most this many calibration samples.")]
_QuantizeBatchSize = Annotated[
    int,
    typer.Option(
        min=1, max=65536, help="Batch size for calibration and evaluation (a fixed-shape model's own batch wins)."
    ),
]
_QuantizeActivationType = Annotated[
    Optional[str], typer.Option(help="uint8, int8, uint16 or int16 (default: the device's, else uint8).")
]
_QuantizeWeightType = Annotated[
    Optional[str], typer.Option(help="int8, uint8, int16 or uint16 (default: the device's, else int8).")
]
_QuantizePerChannel = Annotated[
    Optional[bool],
    typer.Option(
        "--per-channel/--per-tensor",
        help="Weight scales per output channel (default: the device's, else per channel).",
    ),
]
_QuantizeReduceRange = Annotated[
    Optional[bool],
    typer.Option(
        "--reduce-range/--full-range",
        help="7-bit weights for x86 CPUs without VNNI (default: on exactly when this CPU lacks VNNI, or the device's setting).",
    ),
]
_QuantizeExclude = Annotated[
    Optional[list[str]], typer.Option(help="Node name or op type to keep in float. Repeatable.")
]
_QuantizeEvalData = Annotated[
    Optional[str],
    typer.Option(
        "--data",
        "--eval-data",
        help="Data (with labels for classification) on which the result is compared with its parent.",
    ),
]
_QuantizeReport = Annotated[
    bool,
    typer.Option("--report", help="Print the quantized tensors with the most quantization noise (lowest SQNR)."),
]
_QuantizeMaxDrop = Annotated[
    Optional[float],
    typer.Option(
        min=0.0,
        max=1.0,
        help="Keep the noisiest nodes in float until the metric drops by at most this much on --data (0.01 = 1 accuracy point).",
    ),
]
_QuantizeImatrix = Annotated[
    Optional[Path],
    typer.Option(help="GGUF: an importance matrix llama.cpp's llama-imatrix wrote (GGUF format), instead of --calib."),
]


@app.command()
def quantize(
    model: Annotated[
        Path,
        typer.Argument(
            help="A float .onnx model, a .gguf for llama.cpp k-quants, or a float ONNX Runtime GenAI folder (int4)."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the quantized model.")],
    method: _QuantizeMethod = None,
    calib: _QuantizeCalib = None,
    calib_method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    calib_samples: _QuantizeCalibSamples = None,
    batch_size: _QuantizeBatchSize = 8,
    activation_type: _QuantizeActivationType = None,
    weight_type: _QuantizeWeightType = None,
    per_channel: _QuantizePerChannel = None,
    symmetric: Annotated[bool, typer.Option("--symmetric", help="Symmetric activation ranges.")] = False,
    reduce_range: _QuantizeReduceRange = None,
    exclude: _QuantizeExclude = None,
    block_size: Annotated[
        Optional[int],
        typer.Option(min=16, max=4096, help="int4: weights per block (default 128; 32 for a GenAI folder)."),
    ] = None,
    eval_data: _QuantizeEvalData = None,
    report: _QuantizeReport = False,
    max_drop: _QuantizeMaxDrop = None,
    imatrix: _QuantizeImatrix = None,
    runs: Annotated[int, typer.Option(min=1, max=100000, help="Interleaved timing runs for the comparison.")] = 30,
    device: Device = None,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Quantize a model and compare it with its float parent: metric and latency, side by side.

    Examples:

      edgeinfer quantize minilm.onnx -o minilm-int8.onnx --method dynamic --data sentences.txt

      edgeinfer quantize lenet.onnx -o lenet-int8.onnx --method static --calib calib.npz --data test.npz --report

      edgeinfer quantize lenet-static.onnx -o lenet-npu.onnx --method static --calib calib.npz --device snapdragon-npu

      edgeinfer quantize smollm2-f16.gguf -o smollm2-q4_k_m.gguf --method Q4_K_M --calib text.txt

      edgeinfer quantize smollm2-onnx-fp32 -o smollm2-onnx-int4 --method int4 --calib text.txt
    """
    from edgeinfer.pipelines.commands import Quantized, QuantizeRequest, quantize_any

    request = QuantizeRequest(
        method=method, calib=calib, calib_method=calib_method, calib_samples=calib_samples, batch_size=batch_size,
        activation_type=activation_type, weight_type=weight_type, per_channel=per_channel, symmetric=symmetric,
        reduce_range=reduce_range, exclude=tuple(exclude or ()), block_size=block_size, eval_data=eval_data,
        report=report, max_drop=max_drop, imatrix=imatrix, runs=runs, force=force,
    )  # fmt: skip
    profile, _ = resolve_device(device, None)
    with CliProgress("quantizing") as progress:
        done = quantize_any(model, output, request, profile=profile, progress=progress)
    from edgeinfer.pipelines.export_genai import GenAiExport

    if isinstance(done, GenAiExport):  # a float GenAI folder, now edgeinfer's INT4
        from edgeinfer.cli.models import print_genai

        print_genai(output, done, "int4", done.block_size, as_json)
    elif not isinstance(done, Quantized):  # an encoder-decoder folder: both parts, compared token for token
        _print_seq2seq(done, as_json, f"quantized {model} -> {output}/ ({method or 'dynamic'})")
    elif done.kind == "gguf":
        from edgeinfer.cli.llm import print_gguf_quantize

        print_gguf_quantize(model, output, done.figures, as_json)
    else:
        _print_onnx_quantize(model, output, done.artifact, done.figures, as_json)


def _print_onnx_quantize(model: Path, output: Path, art, result: dict, as_json: bool) -> None:
    comparison = result["comparison"]
    if as_json:
        shown = {**result, "comparison": comparison.to_dict() if comparison is not None else None}
        print(json.dumps({"output": str(output), "config": art.steps[-1].config, **shown}, default=str))
        return
    if comparison is not None:
        print_comparison(comparison, title=f"{model.name} -> {output.name}")
    else:
        console.print(
            f"wrote {output} ({mb(output.stat().st_size)}); pass --data or --calib to compare it with its parent"
        )
    if result.get("sqnr"):
        table = Table(title="noisiest quantized tensors (lowest SQNR first)")
        for col in ("tensor", "node", "op", "SQNR dB"):
            table.add_column(col)
        for row in result["sqnr"][:10]:
            node = row["node"] or "(model input)"
            table.add_row(row["tensor"], node, row["op_type"] or "-", f"{row['sqnr_db']:.1f}")
        console.print(table)
    if result.get("search"):
        s = result["search"]
        for st in s["steps"][1:]:
            console.print(f"  kept {st['added']} in float: drop {st['drop']:.4f} (bought {st['bought']:+.4f})")
        if s["met"]:
            console.print(
                f"[green]met --max-drop {s['max_drop']}: drop {s['best_drop']:.4f} with "
                f"{len(art.steps[-1].config['nodes_excluded'])} node(s) in float[/green]"
            )
        else:
            warn(
                f"could NOT meet --max-drop {s['max_drop']}: the best found drops {s['best_drop']:.4f}; "
                f"that model was kept and is labelled as such in its sidecar"
            )


# Metric names as column headers short enough for an 80-column table.
_METRIC_HEADERS = {
    "agreement_with_baseline": "agree",
    "cosine_mean": "cos mean",
    "cosine_min": "cos min",
    "retrieval_top10": "top-10 nbrs",
    "max_abs_diff": "max diff",
}


def print_comparison(report: ComparisonReport, title: str) -> None:
    rows = report.rows
    keys = list(rows[0].metrics)
    prefix, names = short_names([r.name for r in rows])
    headers = [_METRIC_HEADERS.get(k, k.replace("_", " ")) for k in keys]
    table = compact_table(
        f"{title} ({report.task}, {report.samples} samples, batch {report.batch_shape})"
        + (f"; models {prefix}*" if prefix else ""),
        ["model", "MiB", "p50 ms", "speedup (95% CI)", *headers, "providers"],
        left=("model", "providers"),
    )
    for i, (name, r) in enumerate(zip(names, rows)):
        lo, hi = r.speedup_ci95
        speed = "1.00x" if i == 0 else f"{r.speedup:.2f}x ({lo:.2f}-{hi:.2f})"
        if i and r.slower:  # slower only when the whole interval says so
            speed = f"[bold red]{speed} SLOWER[/bold red]"
        elif i and r.simulated:
            speed += " (simulator)"
        cells = []
        for k in keys:
            cell = f"{r.metrics[k]:.4f}"
            if k == "accuracy" and i and r.delta is not None:
                cell += f" ({r.delta:+.4f})"
            cells.append(cell)
        table.add_row(
            name,
            f"{r.file_size_bytes / 2**20:.2f}",
            f"{r.latency_ms['p50']:.3f}",
            speed,
            *cells,
            ",".join(p.removesuffix("ExecutionProvider") for p in r.providers),
        )
    console.print(table)
    if any(r.simulated for r in rows):
        err.print(
            "models on QNN ran on its x86 simulator of the NPU: their latency is the simulator's, not the "
            "device's (quality figures hold); time them on the device with `edgeinfer verify`",
            highlight=False,
        )


@app.command("optimize-graph")
def optimize_graph(
    model: Annotated[
        Path, typer.Argument(help="A transformer .onnx exported by edgeinfer from a Hugging Face folder.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The optimized .onnx file.")],
    fusions: Annotated[
        str,
        typer.Option(
            help="auto (time all / no-attention / none on the target shape, keep the fastest), all, no-attention or none."
        ),
    ] = "auto",
    batch: Annotated[int, typer.Option(min=1, max=4096, help="Target batch size that auto measures on.")] = 1,
    sequence: Annotated[
        int, typer.Option(min=1, max=65536, help="Target sequence length that auto measures on.")
    ] = 128,
    runs: Annotated[int, typer.Option(min=3, max=10000, help="Interleaved timing runs per variant.")] = 20,
    device: Device = None,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """ONNX Runtime's transformer fusions (Attention, SkipLayerNormalization, BiasGelu,
    EmbedLayerNormalization), kept only where they are faster here.

    Every variant is checked against the input graph on two shapes; with --fusions auto each is
    timed on --batch x --sequence and a fusion is kept only when its whole 95% interval is faster.
    Quantize after this step, not before.

    Example: edgeinfer optimize-graph minilm.onnx -o minilm-opt.onnx --batch 1 --sequence 32
    """
    from edgeinfer.compress.graph_opt import GraphOptConfig
    from edgeinfer.pipelines.optimize_graph import optimize_graph as run

    cfg = GraphOptConfig(fusions, batch, sequence, runs)  # type: ignore[arg-type]
    profile, _ = resolve_device(device, None)
    with CliProgress("optimizing the graph") as progress:
        art, report = run(model, output, cfg, profile=profile, force=force, progress=progress)
    if as_json:
        print(json.dumps({"output": str(output), **report.to_dict()}))
        return
    fused = ", ".join(f"{op} x{n}" for op, n in report.fused.items()) or "none"
    console.print(f"wrote {output}: {report.chosen} (fused: {fused})")
    if report.timings_ms:
        times = ", ".join(f"{k} {v:.2f} ms" for k, v in report.timings_ms.items())
        shape = ", ".join(f"{k}{v}" for k, v in report.shape.items())
        console.print(f"p50 on {shape}: {times}")
        if report.speedup_ci95 and report.chosen != "none":
            lo, hi = report.speedup_ci95
            console.print(f"{report.speedup:.2f}x the input graph (95% CI {lo:.2f}-{hi:.2f})")


Data = Annotated[
    str,
    typer.Option(
        "--data",
        help=".npz (with `labels` for classification), a folder of .npz, a .txt of sentences, or package.module:function.",
    ),
]
Task = Annotated[
    str,
    typer.Option(
        help="auto (the export's head: tokens, fill-mask, span, detection, segmentation or transcription; "
        "encoders -> embedding; labels -> classification; else raw), or one of those by name."
    ),
]
Runs = Annotated[int, typer.Option(min=1, max=100000, help="Interleaved timing runs.")]
Batch = Annotated[int, typer.Option(min=1, max=65536, help="Batch size (a fixed-shape model's own batch wins).")]
Limit = Annotated[Optional[int], typer.Option(min=1, help="Use at most this many samples.")]


_CompareData = Annotated[
    Optional[str],
    typer.Option(
        "--data",
        help="ONNX: .npz (with `labels` for classification), a folder of .npz, a .txt of sentences, or package.module:function.",
    ),
]
_CompareText = Annotated[
    Optional[Path],
    typer.Option(
        help="GGUF: text to score; encoder-decoder: source sentences, one a line (default: those shipped with edgeinfer)."
    ),
]
_CompareAudio = Annotated[
    Optional[Path],
    typer.Option(
        help="Speech encoder-decoder (Whisper): a WAV file or a folder of them (default: synthetic voiced clips)."
    ),
]
_CompareKvType = Annotated[
    str,
    typer.Option(help="GGUF: the candidates' KV-cache type, f16, q8_0 or q4_0 (the baseline keeps f16)."),
]
_CompareWindow = Annotated[
    int, typer.Option(min=4, max=1 << 20, help="GGUF: tokens per scored chunk (its second half is scored).")
]
_CompareLogits = Annotated[
    Optional[Path],
    typer.Option(help="GGUF: where to keep the baseline's log-probs (default: a cache keyed by model and text)."),
]


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="The reference model (runs on the CPU).")],
    candidates: Annotated[list[Path], typer.Argument(help="Compressed models to compare with it.")],
    data: _CompareData = None,
    text: _CompareText = None,
    audio: _CompareAudio = None,
    kv_type: _CompareKvType = "f16",
    window: _CompareWindow = 256,
    max_tokens: Annotated[int, typer.Option(min=4, max=1 << 22, help="GGUF: tokens of the text to use.")] = 1024,
    logits: _CompareLogits = None,
    task: Task = "auto",
    report: Annotated[Optional[Path], typer.Option(help="Also write an HTML report here.")] = None,
    device: Device = None,
    provider: ProviderOpt = None,
    allow_fallback: Fallback = False,
    runs: Runs = 30,
    batch_size: Batch = 8,
    limit: Limit = None,
    as_json: Json = False,
) -> None:
    """One table, one row a model: size, p50 latency and speedup, the task metric and its delta.

    Candidates run on --device/--provider (the baseline on the CPU), so an NPU model is
    compared with the float model on the CPU. Timing is interleaved across all models.

    GGUF models (llama.cpp): perplexity, mean and p99 KL divergence and top-1 agreement against
    the baseline's log-probs (computed once, kept in a logits file), bits per weight, pp and tg
    tokens per second.
    """
    from edgeinfer.pipelines.commands import CompareRequest, compare_any
    from edgeinfer.pipelines.compare import ComparisonReport
    from edgeinfer.pipelines.llm_eval import LlmComparisonReport

    profile, providers = resolve_device(device, provider)
    request = CompareRequest(
        data=data, text=text, audio=audio, task=task, providers=tuple(providers or ()) or None,
        allow_fallback=allow_fallback, runs=runs, batch_size=batch_size, limit=limit, kv_type=kv_type,
        window=window, max_tokens=max_tokens, logits=logits,
    )  # fmt: skip
    with CliProgress("comparing") as progress:
        result = compare_any(baseline, candidates, request, profile=profile, progress=progress)
    if isinstance(result, LlmComparisonReport):
        from edgeinfer.cli.llm import print_llm_report

        if as_json:
            print(json.dumps(result.to_dict()))
        else:
            print_llm_report(result)
        return
    if not isinstance(result, ComparisonReport):  # an encoder-decoder folder, by greedy generation
        _print_seq2seq(result, as_json, "compare (encoder-decoder, greedy)")
        return
    if report:
        from edgeinfer.pipelines.compare import write_html

        write_html(result, report)
        err.print(f"wrote the HTML report {report}")
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    print_comparison(result, "compare")


_CheckMinCosine = Annotated[
    Optional[float], typer.Option(help="Smallest allowed mean cosine to the baseline (embeddings, raw outputs).")
]
_CheckMinAgreement = Annotated[
    Optional[float],
    typer.Option(
        help="Smallest allowed share of decisions agreeing with the baseline (classes, token labels, answer "
        "spans, detections, pixels, transcripts)."
    ),
]
_CheckMaxSlowdown = Annotated[
    Optional[float],
    typer.Option(
        help="Largest allowed latency ratio candidate/baseline (1.1 = 10% slower); broken only when the whole 95% interval is beyond it."
    ),
]
_CheckMinSpeedup = Annotated[
    Optional[float],
    typer.Option(
        help="Smallest allowed speedup over the baseline; broken only when the whole 95% interval is below it."
    ),
]


@app.command()
def check(
    baseline: Annotated[Path, typer.Argument(help="The reference model (.onnx, or .gguf with --text).")],
    candidates: Annotated[list[Path], typer.Argument(help="Models that must stay within the budget.")],
    data: Annotated[Optional[str], typer.Option("--data", help="Evaluation data, as for compare.")] = None,
    text: Annotated[Optional[Path], typer.Option(help="GGUF: a text file to score.")] = None,
    task: Task = "auto",
    max_drop: Annotated[Optional[float], typer.Option(help="Largest allowed accuracy drop (0.01 = 1 point).")] = None,
    min_cosine: _CheckMinCosine = None,
    min_agreement: _CheckMinAgreement = None,
    max_slowdown: _CheckMaxSlowdown = None,
    min_speedup: _CheckMinSpeedup = None,
    max_size: Annotated[Optional[float], typer.Option(help="Largest allowed candidate file size, MiB.")] = None,
    max_kld: Annotated[Optional[float], typer.Option(help="GGUF: largest allowed mean KL divergence.")] = None,
    min_top1: Annotated[Optional[float], typer.Option(help="GGUF: smallest allowed top-1 token agreement.")] = None,
    device: Device = None,
    provider: ProviderOpt = None,
    allow_fallback: Fallback = False,
    runs: Runs = 30,
    batch_size: Batch = 8,
    limit: Limit = None,
    as_json: Json = False,
) -> None:
    """Fail (exit 1) when a candidate loses more than the budget; exit 0 within it, 2 on bad input.

    Example CI step: edgeinfer check fp32.onnx int8.onnx --data test.npz --max-drop 0.01 --max-slowdown 1.0 --json
    """
    import sys

    from edgeinfer.core.errors import ConfigError
    from edgeinfer.pipelines.compare import Budget, ComparisonReport, check_budget

    budget = Budget(
        max_drop=max_drop,
        min_cosine=min_cosine,
        min_agreement=min_agreement,
        max_slowdown=max_slowdown,
        min_speedup=min_speedup,
        max_size_mb=max_size,
        max_kld=max_kld,
        min_top1=min_top1,
    )
    if budget == Budget():
        raise ConfigError(
            "give at least one budget: --max-drop, --min-cosine, --min-agreement, --max-slowdown, --min-speedup, "
            "--max-size, or for GGUF --max-kld / --min-top1"
        )
    from edgeinfer.pipelines.commands import CompareRequest, compare_any
    from edgeinfer.pipelines.llm_eval import LlmComparisonReport

    profile, providers = resolve_device(device, provider)
    request = CompareRequest(
        data=data, text=text, task=task, providers=tuple(providers or ()) or None, allow_fallback=allow_fallback,
        runs=runs, batch_size=batch_size, limit=limit,
    )  # fmt: skip
    with CliProgress("comparing") as progress:
        result = compare_any(baseline, candidates, request, profile=profile, progress=progress)
    if not isinstance(result, (ComparisonReport, LlmComparisonReport)):
        raise ConfigError(
            "check's budgets cover ONNX models and GGUF LLMs; compare encoder-decoder folders with compare"
        )
    problems = check_budget(result, budget)
    if as_json:
        print(
            json.dumps(result.to_dict() | {"budget": budget.to_dict(), "violations": problems, "passed": not problems})
        )
    else:
        if isinstance(result, ComparisonReport):
            print_comparison(result, "check")
        else:
            from edgeinfer.cli.llm import print_llm_report

            print_llm_report(result)
        for p in problems:
            err.print(f"[red]REGRESSION[/red] {p}")
    verdict = (
        f"FAIL: {len(problems)} budget violation(s)"
        if problems
        else f"PASS: {len(candidates)} candidate(s) within budget"
    )
    err.print(f"[{'red' if problems else 'green'}]{verdict}[/]")
    sys.exit(1 if problems else 0)


@app.command(name="compile")
def compile_(
    model: Annotated[Path, typer.Argument(help="A model the device's provider can run (for QNN: fixed shapes, QDQ).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The EP-context model to write (e.g. model_ctx.onnx).")
    ],
    device: Annotated[
        str, typer.Option("--device", "-d", help="Device profile whose first provider compiles the model.")
    ],
    force: Force = False,
) -> None:
    """Precompile a model for an NPU into an EP-context model that ships to the device.

    Example: edgeinfer compile lenet-npu.onnx --device snapdragon-npu -o lenet-npu_ctx.onnx
    """
    from edgeinfer.pipelines.run import compile_model

    profile, _ = resolve_device(device, None)
    art = compile_model(model, output, profile, force=force)
    used = art.steps[-1].config["providers"]
    console.print(f"wrote {output} ({mb(output.stat().st_size)}), compiled by {used[0]}")


def _print_seq2seq(result, as_json: bool, title: str) -> None:
    """An encoder-decoder comparison: size, speed and agreement with the baseline's tokens."""
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    sources = "sources" if result.task == "speech-seq2seq" else f"sentences of {result.text}"
    table = Table(title=f"{title}: {result.sentences} {sources}, up to {result.max_new_tokens} tokens")
    for col in ("model", "size MiB", "tokens/s", "speedup (95% CI)", "exact match", "token agreement", "WER"):
        table.add_column(col, justify="left" if col == "model" else "right", overflow="fold")
    for i, r in enumerate(result.rows):
        speed = "1.00x (baseline)" if i == 0 else f"{r.speedup:.2f}x ({r.speedup_ci95[0]:.2f}-{r.speedup_ci95[1]:.2f})"
        table.add_row(
            r.model, f"{r.size_bytes / 2**20:.2f}", f"{r.tokens_per_s:.1f}", speed, f"{r.exact_match:.3f}",
            f"{r.token_agreement:.3f}", f"{r.wer:.3f}",
        )  # fmt: skip
    if result.task == "speech-seq2seq":
        err.print(f"audio: {result.text}; WER is each model's text against the baseline's text")
    console.print(table)
