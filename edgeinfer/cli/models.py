"""Commands on one model: export, run, bench, info, devices, and the demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from edgeinfer.cli.app import (
    CliProgress,
    Device,
    Fallback,
    Force,
    Json,
    KvType,
    ProviderOpt,
    Repack,
    Threads,
    TrustSource,
    app,
    console,
    err,
    mb,
    resolve_device,
    runtime_target,
)
from edgeinfer.exporters.tasks import tasks as export_tasks

# ---------------------------------------------------------------------------------- export


_ExportSource = Annotated[
    str,
    typer.Argument(
        help="Hugging Face model directory (an encoder-decoder exports into a folder), a diffusers model folder, a torch.export .pt2 file, or package.module:function (or file.py:function) returning (module, inputs); a factory RUNS that Python code."
    ),
]
_ExportOutput = Annotated[
    Path,
    typer.Option(
        "--output",
        "-o",
        help="Output .onnx or .gguf file (the suffix picks the format); a folder for an encoder-decoder.",
    ),
]
_ExportFormat = Annotated[
    Optional[str], typer.Option("--format", help="onnx or gguf; must agree with the output's suffix.")
]
_ExportTask = Annotated[
    Optional[str],
    typer.Option(
        help=f"For a Hugging Face folder: {', '.join(sorted(export_tasks()))} (default: from config.json's "
        "architecture name)."
    ),
]
_ExportExporter = Annotated[
    str, typer.Option(help="auto (torch.export, then TorchScript if it fails, reported), dynamo or torchscript.")
]
_ExportStaticShapes = Annotated[
    bool, typer.Option("--static-shapes", help="Fix every input shape to the example's (NPUs need it).")
]
_ExportAllowNewHead = Annotated[
    bool,
    typer.Option(
        "--allow-new-head",
        help="Export a --task head the checkpoint has no weights for, initialised at random (recorded in "
        "the sidecar); without it such an export is refused.",
    ),
]
_ExportAllowConstant = Annotated[
    bool,
    typer.Option(
        "--allow-constant-outputs",
        help="Export a model an output of which is one value everywhere in PyTorch (an untrained head's "
        "zeros): validation proves nothing there, so such an export is refused without it.",
    ),
]
_ExportAtol = Annotated[
    Optional[float],
    typer.Option(
        min=0.0, max=1e3, help="Absolute tolerance of the parity check (default by dtype: fp32 1e-4, fp16 1e-2)."
    ),
]
_ExportPrecision = Annotated[
    str,
    typer.Option(
        help="A causal LM exported to a folder (ONNX Runtime GenAI): int4 (default), int8, fp16 or fp32 weights."
    ),
]
_ExportBlockSize = Annotated[
    int, typer.Option(help="ONNX Runtime GenAI INT4/INT8: weights per quantization block (16 ... 256).")
]
_ExportCalib = Annotated[
    Optional[Path],
    typer.Option(
        help="ONNX Runtime GenAI INT4: a text to calibrate on; each layer weight's 4-bit damage is measured on "
        "it to place the 8-bit weights and block sizes, and the weights are quantized by GPTQ on its "
        "activations (default: no calibration, llama.cpp's Q4_K_M placement and a grid search)."
    ),
]
_ExportInt4Recipe = Annotated[
    str,
    typer.Option(
        help="ONNX Runtime GenAI INT4: edgeinfer (default: 8-bit head and Q4_K_M's sensitive layers, "
        "asymmetric 4-bit elsewhere) or builder (the model builder's own round-to-nearest INT4)."
    ),
]
_ExportImageSize = Annotated[
    Optional[str],
    typer.Option(
        help="An image model whose folder has no preprocessor_config.json: validate on random pixels of "
        "this size (N or HxW). With the file, its image processor sizes and normalises the example pictures."
    ),
]
_ExportOuttype = Annotated[
    Optional[str],
    typer.Option(help="GGUF: f32, f16 (default), bf16 or q8_0. Norms stay f32; use `quantize` for k-quants."),
]
_ExportAdapter = Annotated[
    Optional[Path], typer.Option(help="GGUF: a PEFT LoRA adapter directory merged into the weights first.")
]
_ExportCheckTokens = Annotated[
    int,
    typer.Option(
        min=16,
        max=4096,
        help="GGUF: tokens of the shipped text on which llama.cpp's log-probs are compared with transformers'.",
    ),
]
_ExportDevice = Annotated[
    Optional[str],
    typer.Option(
        "--device",
        "-d",
        help="Device profile: one that needs static shapes (NPUs) fixes them, as --static-shapes does.",
    ),
]


@app.command()
def export(
    source: _ExportSource,
    output: _ExportOutput,
    format: _ExportFormat = None,
    task: _ExportTask = None,
    opset: Annotated[Optional[int], typer.Option(min=7, max=26, help="ONNX opset (default 18).")] = None,
    exporter: _ExportExporter = "auto",
    static_shapes: _ExportStaticShapes = False,
    allow_new_head: _ExportAllowNewHead = False,
    allow_constant_outputs: _ExportAllowConstant = False,
    atol: _ExportAtol = None,
    precision: _ExportPrecision = "int4",
    block_size: _ExportBlockSize = 32,
    calib: _ExportCalib = None,
    int4_recipe: _ExportInt4Recipe = "edgeinfer",
    image_size: _ExportImageSize = None,
    outtype: _ExportOuttype = None,
    adapter: _ExportAdapter = None,
    check_tokens: _ExportCheckTokens = 256,
    device: _ExportDevice = None,
    force: Force = False,
    trust_source: TrustSource = False,
    as_json: Json = False,
) -> None:
    """Export a model to ONNX and check it against the source before calling it done.

    The model runs in PyTorch and in the exported runtime on the example inputs and on a second
    input shape (padded batches for text models); any output that differs beyond tolerance fails
    the export with every mismatch listed, and nothing is written.

    A .gguf output takes a Hugging Face causal LM directory (Llama, Mistral, Qwen2, Gemma,
    Gemma 2, Phi-3, GPT-2). Before the file is kept, llama.cpp must tokenize a sample exactly as
    the Hugging Face tokenizer does, and its log-probs must match transformers' (mean KL and
    top-1 agreement within the output type's tolerance).

    What runs code: a factory spec (package.module:function, file.py:function) imports and runs
    that Python, as `python -c` would; only the module it names is imported (never a stray file
    in the current folder). A model folder is read as data: no pickles, no remote code (a config
    with auto_map is refused). A .pt2 is loaded as tensors only; one that holds pickled Python
    objects is refused unless --trust-source.

    Examples:

      edgeinfer export path/to/all-MiniLM-L6-v2 -o minilm.onnx

      edgeinfer export edgeinfer.examples.digits:lenet -o lenet.onnx

      edgeinfer export path/to/SmolLM2-135M-Instruct -o smollm2-f16.gguf

      edgeinfer export path/to/llama -o tuned.gguf --adapter path/to/lora --outtype q8_0

      edgeinfer export path/to/SmolLM2-135M-Instruct -o smollm2-int4 --precision int4 --calib text.txt
    """
    from edgeinfer.pipelines.commands import ExportRequest, export_any
    from edgeinfer.pipelines.export_genai import GenAiExport
    from edgeinfer.pipelines.export_seq2seq import Seq2SeqExport

    request = ExportRequest(
        task=task, opset=opset, exporter=exporter, static_shapes=static_shapes, atol=atol, format=format,
        outtype=outtype, adapter=str(adapter) if adapter else None, check_tokens=check_tokens,
        allow_new_head=allow_new_head, image_size=image_size, allow_constant_outputs=allow_constant_outputs,
        precision=precision, block_size=block_size,
        calib=calib, int4_recipe=int4_recipe, force=force, trust_source=trust_source,
    )  # fmt: skip
    with CliProgress("exporting") as progress:
        art = export_any(source, output, request, profile=resolve_device(device, None)[0], progress=progress)
    if isinstance(art, Seq2SeqExport):
        _print_encoder_decoder(output, art, as_json)
        return
    if isinstance(art, GenAiExport):
        print_genai(output, art, precision, block_size, as_json)
        return
    if art.format == "gguf":
        _print_gguf_export(output, art, as_json)
    else:
        _print_onnx_export(output, art, as_json)


def _print_onnx_export(output: Path, art, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {"output": str(output), "sha256": art.sha256, "meta": art.meta, "validation": art.validation},
                default=str,
            )
        )
        return
    table = Table(title=f"exported {output}", show_header=False)
    table.add_row("file size", mb(output.stat().st_size))
    for key in ("parameters", "opset", "task"):
        if art.meta.get(key) is not None:
            value = art.meta[key]
            table.add_row(key, f"{value:,}" if isinstance(value, int) and key == "parameters" else str(value))
    step = art.steps[-1]
    if step.config.get("exporter_used"):
        table.add_row("exporter", step.config["exporter_used"] + (" (fallback)" if "fallback" in step.config else ""))
    v = art.validation
    table.add_row("max abs diff", f"{v['max_abs_diff']:.3g}")
    table.add_row("min cosine", f"{v['min_cosine']:.6f}")
    if v.get("constant_outputs"):
        table.add_row("not checked", f"{', '.join(v['constant_outputs'])}: one value everywhere in PyTorch")
    if "cases" in v:
        table.add_row(
            "validated on", "; ".join(", ".join(f"{n}{s}" for n, s in c["inputs"].items()) for c in v["cases"].values())
        )
    table.add_row("sidecar", str(art.sidecar))
    console.print(table)


def print_genai(output: Path, result, precision: str, block_size: int, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), default=str))
        return
    p = result.validation["logits_parity"]
    size = sum(f.stat().st_size for f in output.iterdir() if f.name.startswith("model.onnx"))
    table = Table(title=f"exported {output}/ (ONNX Runtime GenAI, {precision})", show_header=False)
    table.add_row("weights", f"{mb(size)} ({precision}, block {block_size})")
    q = result.quantization
    if q:
        bits = ", ".join(f"{n} at {b} bits" for b, n in q["bits"].items())
        how = {"gptq": f"GPTQ on {q['calibration_tokens']} calibration tokens", "importance": "importance-weighted",
               "weighted-grid": "grid search, no calibration text"}[q["method"]]  # fmt: skip
        table.add_row("recipe", f"edgeinfer: {bits}; {how}")
        placement = q.get("placement") or {}
        if placement.get("by") == "measured sensitivity":
            table.add_row(
                "placement",
                f"by each weight's measured 4-bit damage on {placement['tokens']} tokens, "
                f"{mb(placement['bytes'])} for the layers (the Q4_K_M rule's {mb(placement['budget_bytes'])})",
            )
    table.add_row(
        "vs transformers",
        f"KL mean {p['kl_mean']:.4f} (<= {p['tolerance']['kl_mean']}), top-1 {p['top1_agreement']:.3f} "
        f"on {p['tokens']} tokens",
    )
    table.add_row("run it", f'edgeinfer run {output} --prompt "..."; compare BASE.gguf {output}')
    console.print(table)


def _print_encoder_decoder(output: Path, result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), default=str))
        return
    table = Table(title=f"exported {output}/ (encoder-decoder)", show_header=False)
    for part, art in (("encoder", result.encoder), ("decoder", result.decoder)):
        v = art.validation
        cases = "; ".join(
            ", ".join(f"{n}{s}" for n, s in c["inputs"].items() if not n.startswith("past.") or n == "past.0.key")
            for c in v["cases"].values()
        )
        table.add_row(part, f"{mb(art.path.stat().st_size)}, max abs diff {v['max_abs_diff']:.3g} on {cases}")
    check = result.check
    speech = result.task == "speech-seq2seq"
    sources = "synthetic voiced clips" if speech else "sentences"
    table.add_row(
        "greedy generation",
        f"identical to transformers on {len(check['cases'])} {sources} ({check['tokens']} tokens)",
    )
    table.add_row(
        "run it", f"edgeinfer run {output} --audio FILE.wav" if speech else f'edgeinfer run {output} --prompt "..."'
    )
    console.print(table)


def _print_gguf_export(output: Path, art, as_json: bool) -> None:
    v = art.validation
    if as_json:
        print(
            json.dumps(
                {
                    "output": str(output),
                    "sha256": art.sha256,
                    "meta": art.meta,
                    "config": art.steps[-1].config,
                    "validation": v,
                },
                default=str,
            )
        )
        return
    rt, lp = v["tokenizer_roundtrip"], v["logits_parity"]
    tol = lp["tolerance"]
    table = Table(title=f"exported {output}", show_header=False)
    table.add_row("file size", mb(output.stat().st_size))
    table.add_row("architecture", f"{art.meta['architecture']} -> {art.meta['gguf_architecture']}")
    table.add_row("converter", art.meta.get("converter", "edgeinfer"))
    table.add_row("tensors", ", ".join(f"{n} {t}" for t, n in art.meta["tensor_types"].items()))
    tok = art.meta["tokenizer"]
    table.add_row(
        "tokenizer",
        f"{tok['model']} (pre-tokenizer {tok['pre']}), {tok['tokens']:,} tokens"
        + (", chat template" if tok["chat_template"] else ""),
    )
    if "adapter" in art.steps[-1].config:
        a = art.steps[-1].config["adapter"]
        table.add_row("LoRA merged", f"{a['layers']} layers, rank {a['rank']}, scale {a['scale']:g}")
    table.add_row("tokenizer round-trip", f"identical ({rt['hf_tokens']} tokens)")
    table.add_row(
        "top-1 agreement", f"{lp['top1_agreement']:.4f} (>= {tol['top1_agreement']:g}) on {lp['tokens']} tokens"
    )
    table.add_row("KL divergence", f"mean {lp['kl_mean']:.2e} (<= {tol['kl_mean']:g}), p99 {lp['kl_p99']:.2e}")
    table.add_row("conversion", f"{v['conversion_seconds']:.1f} s")
    table.add_row("sidecar", str(art.sidecar))
    console.print(table)


# ---------------------------------------------------------------------------------- run


@app.command()
def run(
    model: Annotated[
        Path,
        typer.Argument(
            help="An .onnx model; a .gguf LLM or an exported encoder-decoder folder with --prompt (Whisper: --audio)."
        ),
    ],
    input: Annotated[
        Optional[Path], typer.Option("--input", "-i", help=".npz whose arrays are named like the model's inputs.")
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the outputs to this .npz.")] = None,
    prompt: Annotated[
        Optional[str], typer.Option(help="GGUF: the prompt to complete; encoder-decoder: the source text.")
    ] = None,
    audio: Annotated[
        Optional[Path],
        typer.Option(
            help="Speech encoder-decoder (Whisper): a WAV file to transcribe (resampled to the model's rate)."
        ),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option(min=1, max=1 << 20, help="GGUF / encoder-decoder: tokens to generate.")
    ] = 128,
    repack: Repack = None,
    kv_type: KvType = None,
    device: Device = None,
    provider: ProviderOpt = None,
    allow_fallback: Fallback = False,
    threads: Threads = None,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Run a model once on given inputs and say which providers ran which nodes.

    Example: edgeinfer run lenet.onnx -i digits.npz -o logits.npz --device x86-avx512-vnni
    """
    from edgeinfer.pipelines.run import Generation, run_model

    profile, providers = resolve_device(device, provider)
    target = runtime_target(providers, threads, allow_fallback, kv_type=kv_type, repack=repack)

    def show(piece: str) -> None:
        if not as_json:
            console.print(piece, end="", highlight=False, soft_wrap=True)

    result = run_model(
        model, target, profile=profile, inputs=input, output=output, prompt=prompt, audio=audio,
        max_tokens=max_tokens, force=force, on_text=show,
    )  # fmt: skip
    if as_json:
        print(json.dumps(result.to_dict()))
    elif isinstance(result, Generation):
        print_generation(result)
    else:
        for name, value in result.outputs.items():
            console.print(f"{name}: shape {list(value.shape)} dtype {value.dtype}")
        console.print(f"providers: {placement_summary(result.providers)}")
        if output:
            console.print(f"wrote {output}")


def print_generation(result) -> None:
    """After the streamed text: where it was cut, how fast, on what."""
    s = result.stats
    console.print()
    if result.cut:
        err.print(f"[dim][cut at --max-tokens {result.max_tokens}][/dim]")
    on = ", ".join(result.backend)
    if s.prompt_seconds:
        err.print(
            f"[dim]{s.prompt_tokens} prompt tokens at {s.prompt_tps:.1f} tok/s, {s.generated_tokens} "
            f"generated at {s.generate_tps:.1f} tok/s on {on}[/dim]"
        )
    else:  # the backend evaluates the prompt (or the encoder) inside the generation's time
        err.print(
            f"[dim]{s.generated_tokens} tokens in {s.generate_seconds:.2f} s ({s.generate_tps:.1f} tok/s, "
            f"prompt included) on {on}[/dim]"
        )


def placement_summary(p: dict) -> str:
    from edgeinfer.runtime import ProviderReport

    return ProviderReport(p["requested"], p["used"], p["fallbacks"], p["placement"]).summary()


# ---------------------------------------------------------------------------------- bench


@app.command()
def bench(
    model: Annotated[Path, typer.Argument(help="An .onnx or .gguf model.")],
    shape: Annotated[
        Optional[list[str]],
        typer.Option(
            "--shape",
            "-s",
            help="input=1x128 fixes an input's shape; batch=8 / sequence=64 set symbolic dims (default batch 1, sequence 128).",
        ),
    ] = None,
    runs: Annotated[
        Optional[int],
        typer.Option(
            min=1, max=100000, help="Timed runs after warm-up (default 50; GGUF: 3 repetitions of pp and tg)."
        ),
    ] = None,
    warmup: Annotated[int, typer.Option(min=0, max=100000, help="Untimed warm-up runs.")] = 5,
    baseline: Annotated[
        Optional[str],
        typer.Option(
            help="Also time this PyTorch source on the same inputs, interleaved ('auto': the source recorded in the sidecar; a factory it names runs only with --trust-source)."
        ),
    ] = None,
    trust_source: TrustSource = False,
    device: Device = None,
    provider: ProviderOpt = None,
    allow_fallback: Fallback = False,
    threads: Threads = None,
    n_prompt: Annotated[int, typer.Option(min=1, max=1 << 20, help="GGUF / GenAI folder: prompt tokens (pp).")] = 512,
    n_gen: Annotated[int, typer.Option(min=1, max=1 << 20, help="GGUF / GenAI folder: generated tokens (tg).")] = 128,
    repack: Repack = None,
    kv_type: KvType = None,
    as_json: Json = False,
) -> None:
    """Benchmark latency (p50/p90/p99), throughput, peak memory and the providers really used.

    JSON keys (schema 1): model, file_size_bytes, inputs, batch, runs, warmup, latency_ms
    {p50,p90,p99,mean,min}, throughput_per_s, peak_rss_mb, providers {requested, used, fallbacks,
    placement}, and with --baseline: baseline {latency_ms, speedup, speedup_ci95}, eager PyTorch
    FP32; on a CPU with BF16 (AVX512-BF16, AMX) also baseline_bf16, eager PyTorch under
    torch.autocast(bfloat16), what a PyTorch user of that CPU would run.
    """
    from edgeinfer.pipelines.bench import LlmBenchReport, bench, parse_shapes

    profile, providers = resolve_device(device, provider)
    target = runtime_target(providers, threads, allow_fallback, kv_type=kv_type, repack=repack)
    with CliProgress("timing", announce=False) as progress:
        result = bench(
            model, target, profile=profile, shapes=parse_shapes(shape or []) or None, runs=runs, warmup=warmup,
            baseline=baseline, trust_source=trust_source, n_prompt=n_prompt, n_gen=n_gen, progress=progress,
        )  # fmt: skip
    if as_json:
        print(json.dumps(result.to_dict()))
    elif isinstance(result, LlmBenchReport):
        from edgeinfer.cli.llm import print_llm_bench

        print_llm_bench(model, result)
    else:
        _print_bench(model, result)


def _print_bench(model: Path, result) -> None:
    lat = result.latency_ms
    table = Table(title=f"bench {model.name}  inputs {result.inputs}")
    for col in ("runtime", "p50 ms", "p90 ms", "p99 ms", "throughput/s", "speedup vs PyTorch"):
        table.add_column(col, justify="right" if col != "runtime" else "left")
    speedup = ""
    if result.baseline is not None:
        lo, hi = result.baseline.speedup_ci95
        speedup = f"{result.baseline.speedup:.2f}x (95% CI {lo:.2f}-{hi:.2f})"
        if result.baseline.slower:  # only when the whole interval says so, as in compare
            speedup = f"[bold red]{speedup} SLOWER[/bold red]"
    table.add_row(
        "onnxruntime",
        f"{lat['p50']:.3f}",
        f"{lat['p90']:.3f}",
        f"{lat['p99']:.3f}",
        f"{result.throughput_per_s:.1f}",
        speedup,
    )
    if result.baseline is not None:
        bl = result.baseline.latency_ms
        table.add_row(
            "pytorch (eager)",
            f"{bl['p50']:.3f}",
            f"{bl['p90']:.3f}",
            f"{bl['p99']:.3f}",
            f"{result.batch * 1000 / bl['p50']:.1f}",
            "1.00x",
        )
    if result.baseline_bf16 is not None:
        b16 = result.baseline_bf16
        ratio = result.baseline.latency_ms["p50"] / b16.latency_ms["p50"] if result.baseline else 0.0
        lo, hi = b16.speedup_ci95
        table.add_row(
            "pytorch (eager, bf16 autocast)",
            f"{b16.latency_ms['p50']:.3f}",
            f"{b16.latency_ms['p90']:.3f}",
            f"{b16.latency_ms['p99']:.3f}",
            f"{result.batch * 1000 / b16.latency_ms['p50']:.1f}",
            f"{ratio:.2f}x; ONNX Runtime vs it: {b16.speedup:.2f}x ({lo:.2f}-{hi:.2f})",
        )
    console.print(table)
    if result.baseline is not None and result.baseline.slower:
        err.print(
            f"[bold red]SLOWER[/bold red]: ONNX Runtime runs {model.name} at {1 / result.baseline.speedup:.2f}x "
            "eager PyTorch's latency on these inputs (p50, interleaved)"
        )
    p = result.providers
    console.print(
        f"file {mb(result.file_size_bytes)}, peak RSS {result.peak_rss_mb:.0f} MiB, "
        f"providers used: {', '.join(p['used'])}"
    )
    console.print(f"node placement: {placement_summary(p)}")


# ---------------------------------------------------------------------------------- devices


@app.command()
def devices(as_json: Json = False) -> None:
    """List the device profiles and which of their execution providers this machine has.

    `host` is this machine, built from its CPU (ISA: VNNI, AVX512-BF16, AMX, ARM dot products),
    cores, memory and the runtimes installed: `optimize MODEL --device host` searches for it.
    """
    from edgeinfer.devices import builtin_profiles, host_isa, host_profile
    from edgeinfer.runtime.openvino import device_capabilities, openvino_version
    from edgeinfer.runtime.ort import available_providers

    avail = set(available_providers())
    profiles = {**builtin_profiles(), "host": host_profile()}
    ov = openvino_version()
    runtimes = {"onnxruntime": __import__("onnxruntime").__version__, "openvino": ov}
    if as_json:
        print(
            json.dumps(
                {
                    "available_providers": sorted(avail),
                    "runtimes": runtimes,
                    "openvino_cpu_capabilities": device_capabilities("CPU") if ov else [],
                    "isa": host_isa(),
                    "profiles": {
                        n: {
                            "description": p.description,
                            "providers": [x.value for x in p.providers],
                            "installed": [x.value for x in p.providers if x.value in avail],
                            "threads": p.threads,
                            "memory_mb": p.memory_mb,
                            "precisions": [x.value for x in p.precisions],
                            "static_shapes": p.static_shapes,
                            "openvino_device": p.openvino_device,
                        }
                        for n, p in profiles.items()
                    },
                }
            )
        )
        return
    table = Table(title="device profiles")
    for col in ("name", "providers (preference order)", "precisions", "memory", "description"):
        table.add_column(col, overflow="fold", no_wrap=col == "name")
    for name, p in profiles.items():
        provs = " > ".join(
            f"[green]{x.short}[/green]" if x.value in avail else f"[dim]{x.short} (missing)[/dim]" for x in p.providers
        )
        if p.openvino_device:
            provs += f"; OpenVINO {p.openvino_device}" + ("" if ov else " [dim](openvino missing)[/dim]")
        table.add_row(name, provs, ",".join(p.precisions), f"{p.memory_mb or '-'} MB", p.description)
    console.print(table)
    console.print(f"providers installed here: {', '.join(sorted(avail))}")
    console.print(
        f"runtimes: onnxruntime {runtimes['onnxruntime']}, "
        + (f"openvino {ov} (CPU: {', '.join(device_capabilities('CPU'))})" if ov else "openvino not installed")
        + f"; this CPU: {', '.join(host_isa()) or 'no AVX2'}"
    )


@app.command()
def info(
    model: Annotated[Path, typer.Argument(help="A model with its .edgeinfer.json sidecar.")], as_json: Json = False
) -> None:
    """Show where a model came from: source, steps with their configs, and the figures measured.

    On a terminal: a summary. With --json: the whole sidecar record, for machines.
    """
    from edgeinfer.core.artifact import load_artifact

    art = load_artifact(model)
    if as_json:
        print(json.dumps(art.to_json(), default=str))
        return
    table = Table(title=f"{model.name}", show_header=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("format", art.format.value)
    table.add_row("file size", mb(model.stat().st_size))
    table.add_row(
        "sha256", art.sha256[:16] + "..." + (" [red](sidecar is stale)[/red]" if art.meta.get("stale_sidecar") else "")
    )
    src = art.source
    table.add_row("source", ", ".join(f"{k} {v}" for k, v in src.items() if k != "kind") + f" ({src.get('kind', '?')})")
    for key in ("task", "architecture", "parameters", "opset", "inputs", "outputs"):
        if art.meta.get(key) is not None:
            value = art.meta[key]
            table.add_row(
                key,
                f"{value:,}"
                if isinstance(value, int) and key == "parameters"
                else (", ".join(map(str, value)) if isinstance(value, list) else str(value)),
            )
    for i, step in enumerate(art.steps, 1):
        config = ", ".join(f"{k}={v}" for k, v in step.config.items() if _short(v))
        figures = ", ".join(f"{k} {_fmt(v)}" for k, v in step.metrics.items() if _short(v) and not isinstance(v, str))
        table.add_row(f"step {i}: {step.op}", "; ".join(x for x in (config, figures, step.time) if x))
    if not art.steps:
        table.add_row("steps", "[dim]no sidecar: this file was not made by edgeinfer[/dim]")
    console.print(table)
    console.print(f"[dim]the whole record: edgeinfer info {model} --json[/dim]")


@app.command("passes")
def list_passes(as_json: Json = False) -> None:
    """List the registered passes: what each takes and gives, and its config with the defaults.

    A recipe is a list of these (name + config); from Python, edgeinfer.pipelines.passes.run_recipe
    runs one.
    """
    import dataclasses

    from edgeinfer.core.config import required_fields
    from edgeinfer.pipelines.passes import passes

    rows = {}
    for name, p in sorted(passes().items()):
        required = required_fields(p.config)
        defaults = {} if required else p.config().to_dict()
        fields = [f.name for f in dataclasses.fields(p.config)]
        rows[name] = {
            "takes": p.takes,
            "gives": p.gives.value,
            "config": p.config.__name__,
            "fields": fields,
            "required": required,
            "defaults": defaults,
            "summary": p.summary,
        }
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="passes (edgeinfer.pipelines.passes)")
    for col in ("pass", "takes -> gives", "config", "does"):
        table.add_column(col, overflow="fold")
    for name, r in rows.items():
        fields = ", ".join(f + (" (required)" if f in r["required"] else "") for f in r["fields"])
        table.add_row(name, f"{r['takes']} -> {r['gives']}", f"{r['config']}: {fields}", r["summary"])
    console.print(table)


def _short(value) -> bool:
    return isinstance(value, (int, float, str, bool)) and len(str(value)) <= 60


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's files.")] = Path("edgeinfer-demo"),
    runs: Annotated[int, typer.Option(min=1, max=100000, help="Timed runs per benchmark.")] = 100,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the demo's files in an existing --out folder.")
    ] = False,
) -> None:
    """Train LeNet-5 on real digits, export, validate, benchmark against PyTorch, compress, compare."""
    from edgeinfer.core.errors import OutputExistsError
    from edgeinfer.pipelines.demo import run_demo

    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise OutputExistsError(
            f"{out} already exists and is not empty; pass --force to overwrite the demo's files "
            "in it, or choose another --out"
        )

    run_demo(out, runs, console)
