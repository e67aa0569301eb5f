"""GGUF LLMs on llama.cpp in the CLI: chat, and the renderers the run / bench / quantize / compare /
check commands use for a .gguf model. The work is done by edgeinfer.pipelines.llm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from edgeinfer.cli.app import (
    Device,
    Fallback,
    KvType,
    Repack,
    Threads,
    app,
    compact_table,
    console,
    err,
    mb,
    resolve_device,
    runtime_target,
    short_names,
    warn,
)

if TYPE_CHECKING:
    from edgeinfer.pipelines.llm_eval import LlmComparisonReport


def settings_for(
    device: str | None,
    threads: int | None = None,
    n_ctx: int | None = None,
    gpu_layers: int | None = None,
    allow_fallback: bool = False,
    kv_type: str | None = None,
    repack: bool | None = None,
):
    """llama.cpp settings from --device and the flags."""
    from edgeinfer.pipelines.llm import llama_settings

    profile, _ = resolve_device(device, None)
    return llama_settings(
        profile,
        threads=threads,
        n_ctx=n_ctx,
        gpu_layers=gpu_layers,
        allow_fallback=allow_fallback,
        kv_type=kv_type,
        repack=repack,
    )


Ctx = Annotated[
    Optional[int], typer.Option(min=16, max=1 << 20, help="Context size (default: the device's, else 2048).")
]
GpuLayers = Annotated[
    Optional[int], typer.Option(min=0, max=100000, help="Layers to offload to a GPU (default: the device's).")
]


def _stream_to_console(stream, as_json: bool):
    from edgeinfer.runtime import GenerationStats

    stats = None
    for piece in stream:
        if isinstance(piece, GenerationStats):
            stats = piece
        elif not as_json:
            console.print(piece, end="", highlight=False, soft_wrap=True)
    if stats is None:  # the runner always ends its stream with the stats
        raise RuntimeError("the generation stream ended without its statistics")
    return stats


def print_llm_bench(model: Path, report) -> None:
    """`edgeinfer bench` of an LLM (pipelines.bench.LlmBenchReport): pp and tg tokens per second,
    and for llama.cpp the peak memory and how close generation comes to the memory-bandwidth bound."""
    result, n_prompt, n_gen = report.figures, report.n_prompt, report.n_gen
    params = f"{result['parameters'] / 1e6:.0f}M params, " if result.get("parameters") else ""
    table = Table(title=f"bench {model.name} ({result['architecture']}, {params}{result['bits_per_weight']:.2f} bpw)")
    for col in ("test", "tokens/s (median)", "runs"):
        table.add_column(col)
    table.add_row(f"pp{n_prompt}", f"{result['pp_tokens_per_s']:.1f}", ", ".join(f"{x:.1f}" for x in result["pp_runs"]))
    table.add_row(f"tg{n_gen}", f"{result['tg_tokens_per_s']:.1f}", ", ".join(f"{x:.1f}" for x in result["tg_runs"]))
    console.print(table)
    for test in ("pp", "tg"):
        spread = result.get(f"{test}_spread", 0.0)
        if spread > 0.2:
            warn(
                f"the {test} runs disagree by {spread:.0%} (slowest to fastest): the machine was busy, so the "
                f"median is uncertain; rerun when it is quiet, or with more --runs"
            )
    peak = f", peak RSS {result['peak_rss_mb']:.0f} MiB" if "peak_rss_mb" in result else ""
    console.print(f"file {mb(result['file_size_bytes'])}{peak}, backend {', '.join(result['backend'])}")
    if "bandwidth_bound_tokens_per_s" in result:
        console.print(
            f"memory-bandwidth bound on {result['threads']} thread(s): {result['read_bandwidth_gb_s']:.1f} GB/s read / "
            f"{result['bytes_per_token'] / 2**20:.1f} MiB per token = {result['bandwidth_bound_tokens_per_s']:.0f} tokens/s; "
            f"generation reaches {result['share_of_bound']:.0%} of it",
            highlight=False,
        )


def print_gguf_quantize(model: Path, output: Path, result: dict, as_json: bool) -> None:
    if as_json:
        keys = ("output", "method", "before", "after", "importance", "tensor_errors")
        print(json.dumps({k: result[k] for k in keys if k in result}))
        return
    before, after = result["before"], result["after"]
    console.print(
        f"wrote {output}: {mb(after['file_size_bytes'])} ({after['bits_per_weight']:.2f} bpw) from "
        f"{mb(before['file_size_bytes'])} ({before['bits_per_weight']:.2f} bpw); tensor types "
        f"{after['tensor_types']}"
    )
    importance = result.get("importance")
    if importance:
        source = importance.get("calibration_text") or importance.get("imatrix_file")
        cached = " (cached)" if importance.get("cached") else ""
        console.print(
            f"importance matrix from {source}{cached}: {importance['chunks']} chunks of {importance['chunk_size']} "
            f"tokens; {importance['weighted_tensors']} of {importance['quantized_tensors']} quantized tensors weighted, "
            f"importance-weighted error {importance['mean_error']:.2e} (llama.cpp's plain {result['method']}: "
            f"{importance['mean_plain_error']:.2e})"
        )
    console.print(f"measure what it cost: edgeinfer compare {model} {output} --text your.txt")


def print_llm_report(report: LlmComparisonReport) -> None:
    prefix, names = short_names([r.name for r in report.rows])
    title = f"LLM quality on {Path(report.text).name} ({report.tokens} tokens, window {report.window})"
    # Two-line headers: at 80 columns every figure keeps its column and no number breaks.
    columns = ["model", "MiB", "bpw", "pp\nt/s", "tg\nt/s", "peak\nMiB", "ppl", "KL\nmean", "KL\np99", "top-1"]
    table = compact_table(title + (f"; models {prefix}*" if prefix else ""), columns)
    for name, r in zip(names, report.rows):
        table.add_row(name, f"{r.file_size_bytes / 2**20:.1f}", *r.figures())
    console.print(table)


ChatFormat = Annotated[
    Optional[str],
    typer.Option(
        metavar="NAME",
        help="For a GGUF without a chat template (a base model): one of llama-cpp-python's built-in "
        "formats (gemma, chatml, llama-3, mistral-instruct, ...). Without it, chat refuses such a model "
        "and serve answers its chat route with 400 (completions still work).",
    ),
]


@app.command()
def chat(
    model: Annotated[Path, typer.Argument(help="A .gguf chat model.")],
    system: Annotated[Optional[str], typer.Option(help="System prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, max=1 << 20, help="Tokens per reply.")] = 256,
    ctx: Ctx = None,
    gpu_layers: GpuLayers = None,
    repack: Repack = None,
    kv_type: KvType = None,
    device: Device = None,
    threads: Threads = None,
    allow_fallback: Fallback = False,
    chat_format: ChatFormat = None,
) -> None:
    """Chat with a GGUF model using its own chat template; tokens per second after each reply.

    Type a message and press Enter; an empty line or Ctrl-D ends the chat. A GGUF that carries no
    chat template is refused unless --chat-format names the format it was trained on.
    """
    from edgeinfer.pipelines.llm import open_chat

    target = runtime_target(
        None, threads, allow_fallback, n_ctx=ctx, gpu_layers=gpu_layers, kv_type=kv_type, repack=repack
    )
    runner = open_chat(model, target, profile=resolve_device(device, None)[0], chat_format=chat_format)
    messages = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        stats = _stream_to_console(runner.stream(messages=messages, max_tokens=max_tokens), False)
        console.print()
        if stats.generated_tokens + 1 >= max_tokens:
            err.print(f"[dim][reply cut at --max-tokens {max_tokens}][/dim]")
        messages.append({"role": "assistant", "content": stats.text})
        err.print(f"[dim]{stats.generated_tokens} tokens at {stats.generate_tps:.1f} tok/s[/dim]")


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="A .gguf LLM to serve.")],
    host: Annotated[
        str, typer.Option(help="Address to bind. Anything but 127.0.0.1 / localhost / ::1 needs --api-key.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8080,
    api_key: Annotated[
        Optional[str],
        typer.Option(help="Require this key (clients send `Authorization: Bearer KEY`; others get 401)."),
    ] = None,
    model_name: Annotated[
        Optional[str], typer.Option(help="The name clients use in `model` (default: the file's stem).")
    ] = None,
    ctx: Ctx = None,
    gpu_layers: GpuLayers = None,
    max_request_mb: Annotated[
        float, typer.Option(min=0.001, max=1024, help="Largest request body accepted; larger ones get 413.")
    ] = 1.0,
    kv_type: KvType = None,
    repack: Repack = None,
    device: Device = None,
    threads: Threads = None,
    allow_fallback: Fallback = False,
    cors: Annotated[
        Optional[list[str]],
        typer.Option(
            help="A web origin (e.g. http://localhost:3000) whose pages may call the server from a browser; "
            "repeat for more. None by default: a web page you open cannot drive the server."
        ),
    ] = None,
    chat_format: ChatFormat = None,
) -> None:
    """Serve a GGUF LLM over an OpenAI-compatible HTTP API (llama-cpp-python's server).

    /v1/chat/completions (streaming too, with the model's chat template), /v1/completions,
    /v1/models. A GGUF without a chat template answers chat with 400 unless --chat-format
    names its format. Requests queue on the one model; a client that disconnects mid-stream frees it.
    Every request is checked first: grammars are compiled by llama.cpp in a throwaway process
    (a bad one is a 400, not a crashed server), token ids against the vocabulary, bodies must
    be JSON of at most --max-request-mb. With --api-key every route needs the key.
    Needs `pip install 'edgeinfer[serve]'`.

    Example: edgeinfer serve smollm2-q4_k_m.gguf --port 8080, then
    OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="none")
    """
    from edgeinfer.pipelines.serve import serve as run_server

    run_server(
        model,
        runtime_target(None, threads, allow_fallback, n_ctx=ctx, gpu_layers=gpu_layers, kv_type=kv_type, repack=repack),
        resolve_device(device, None)[0],
        host=host,
        port=port,
        api_key=api_key,
        model_name=model_name,
        max_request_mb=max_request_mb,
        cors=tuple(cors or ()),
        chat_format=chat_format,
        announce=lambda line: err.print(line, highlight=False),
    )


@app.command()
def fit(
    model: Annotated[Path, typer.Argument(help="A .gguf LLM.")],
    ctx: Ctx = None,
    kv_type: KvType = None,
    measure: Annotated[
        bool, typer.Option("--measure", help="Also load it in a fresh process and report the real peak.")
    ] = False,
    device: Device = None,
    threads: Threads = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Will this LLM fit? Its memory at a context, before loading: weights, KV cache, compute.

    Read off the GGUF header: the weights, the KV cache at --ctx for --kv-type, llama.cpp's compute
    buffer and llama-cpp-python's logits, plus the Python runtime (a fresh interpreter, measured).
    Compared with the --device profile's memory_mb, else this machine's free memory; exit 1 when
    it does not fit. Example: edgeinfer fit smollm2-q4_k_m.gguf --ctx 4096 --device raspberry-pi-5
    """
    from edgeinfer.pipelines.llm import fit_gguf

    profile, _ = resolve_device(device, None)
    with err.status("estimating" + (" and measuring" if measure else "")):
        result = fit_gguf(model, settings_for(device, threads, ctx, None, False, kv_type), profile, measure=measure)
    if as_json:
        print(json.dumps(result))
    else:
        table = Table(title=f"{model.name} at a context of {result['n_ctx']:,} tokens ({result['kv_type']} KV cache)")
        table.add_column("part")
        table.add_column("MiB", justify="right")
        for part, value in result["parts_mb"].items():
            table.add_row(part.replace("_", " "), f"{value:.1f}")
        table.add_row("estimate", f"{result['estimate_mb']:.1f}")
        if "measured_peak_mb" in result:
            table.add_row(
                "measured peak", f"{result['measured_peak_mb']:.1f} (estimate {result['estimate_error']:+.1%})"
            )
        console.print(table)
        verdict = "fits" if result["fits"] else "does NOT fit"
        console.print(f"{verdict} in {result['budget_mb']:.0f} MiB ({result['budget_from']})")
        if "warning" in result:
            warn(result["warning"])
    if not result["fits"]:
        raise typer.Exit(1)
