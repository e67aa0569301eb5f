"""CLI for GGUF LLMs on llama.cpp: run, chat, bench, quantize, and the quality harness (compare/check)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from edgeinfer.cli.app import Device, Fallback, Threads, app, console, err, mb, warn


def _settings(device: str | None, threads: int | None, n_ctx: int | None = None, gpu_layers: int | None = None,
              allow_fallback: bool = False):
    from edgeinfer.devices import get_profile
    from edgeinfer.runtime.llama import LlamaSettings

    llm = get_profile(device).llm if device else {}
    profile_threads = get_profile(device).threads if device else None
    return LlamaSettings(n_ctx=n_ctx or llm.get("n_ctx", 2048), threads=threads or profile_threads,
                         n_gpu_layers=gpu_layers if gpu_layers is not None else llm.get("n_gpu_layers", 0),
                         allow_fallback=allow_fallback)


def _print_stream(runner, out: Console, as_json: bool, **kwargs):
    from edgeinfer.runtime.llama import GenerationStats

    stats = None
    for piece in runner.stream(**kwargs):
        if isinstance(piece, GenerationStats):
            stats = piece
        elif not as_json:
            out.print(piece, end="", highlight=False, soft_wrap=True)
    return stats


def run_llm(model: Path, prompt: str | None, max_tokens: int, device: str | None, threads: int | None,
            as_json: bool, out: Console) -> None:
    from edgeinfer.core.errors import ConfigError
    from edgeinfer.runtime.llama import LlamaRunner

    if not prompt:
        raise ConfigError("GGUF models need --prompt TEXT (or use `edgeinfer chat`)")
    runner = LlamaRunner(model, _settings(device, threads), warn=warn)
    stats = _print_stream(runner, out, as_json, prompt=prompt, max_tokens=max_tokens)
    if as_json:
        print(json.dumps({"text": stats.text, "prompt_tokens": stats.prompt_tokens,
                          "generated_tokens": stats.generated_tokens, "prompt_tokens_per_s": stats.prompt_tps,
                          "generation_tokens_per_s": stats.generate_tps, "backend": runner.report.used}))
        return
    out.print()
    if stats.generated_tokens + 1 >= max_tokens:
        err.print(f"[dim][cut at --max-tokens {max_tokens}][/dim]")
    err.print(f"[dim]{stats.prompt_tokens} prompt tokens at {stats.prompt_tps:.1f} tok/s, {stats.generated_tokens} "
              f"generated at {stats.generate_tps:.1f} tok/s on {', '.join(runner.report.used)}[/dim]")


def bench_llm(model: Path, n_prompt: int, n_gen: int, reps: int, device: str | None, threads: int | None,
              as_json: bool, out: Console) -> None:
    from edgeinfer.core.measure import peak_rss_mb
    from edgeinfer.runtime.llama import LlamaRunner, gguf_summary

    runner = LlamaRunner(model, _settings(device, threads, n_ctx=n_prompt + n_gen + 8), warn=warn)
    with err.status(f"pp{n_prompt} / tg{n_gen}, {reps} repetitions"):
        result = runner.bench(n_prompt, n_gen, reps)
    result.update(gguf_summary(model), model=str(model), peak_rss_mb=peak_rss_mb(), backend=runner.report.used)
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"bench {model.name} ({result['architecture']}, {result['parameters'] / 1e6:.0f}M params, "
                        f"{result['bits_per_weight']:.2f} bpw)")
    for col in ("test", "tokens/s (median)", "runs"):
        table.add_column(col)
    table.add_row(f"pp{n_prompt}", f"{result['pp_tokens_per_s']:.1f}", ", ".join(f"{x:.1f}" for x in result["pp_runs"]))
    table.add_row(f"tg{n_gen}", f"{result['tg_tokens_per_s']:.1f}", ", ".join(f"{x:.1f}" for x in result["tg_runs"]))
    out.print(table)
    out.print(f"file {mb(result['file_size_bytes'])}, peak RSS {result['peak_rss_mb']:.0f} MiB, "
              f"backend {', '.join(result['backend'])}")


def quantize_gguf_cli(model: Path, output: Path, method: str, imatrix: Path | None, force: bool, as_json: bool,
                      out: Console) -> None:
    from edgeinfer.compress.gguf_quant import GgufQuantConfig, GgufType, quantize_gguf
    from edgeinfer.core.artifact import Step, load_artifact
    from edgeinfer.core.errors import ConfigError, parse_choice
    from edgeinfer.core.io import atomic_path, check_output
    from edgeinfer.runtime.llama import gguf_summary

    if imatrix is not None:
        raise ConfigError("--imatrix: llama-cpp-python's quantize binding takes no importance-matrix file; "
                          "use llama.cpp's llama-quantize --imatrix for that")
    cfg = GgufQuantConfig(parse_choice(GgufType, method.upper(), "llama.cpp type"))
    if output.suffix.lower() != ".gguf":
        raise ConfigError(f"llama.cpp quantization writes GGUF: name the output .gguf, not {output.name}")
    check_output(output, [model], force)
    parent = load_artifact(model)
    before = gguf_summary(model)
    with err.status(f"llama.cpp quantizing to {cfg.type}"):
        with atomic_path(output, overwrite=force) as tmp:
            facts = quantize_gguf(model, tmp, cfg)
    after = gguf_summary(output)
    note = dict(facts)
    if facts["fallback_tensors"]:
        warn(f"{facts['fallback_tensors']} tensor(s) have rows that are not multiples of 256, so llama.cpp stored them "
             f"in another type than {cfg.type.value}; that is why the size differs from the type's nominal bits")
    if before["bits_per_weight"] < 16:
        note["requantized_from"] = sorted(before["tensor_types"])
    art = parent.derive(output, Step("quantize", {"method": cfg.type.value, **note},
                                     {k: after[k] for k in ("bits_per_weight", "tensor_types", "file_size_bytes")}))
    art.save()
    if as_json:
        print(json.dumps({"output": str(output), "before": before, "after": after}))
        return
    out.print(f"wrote {output}: {mb(after['file_size_bytes'])} ({after['bits_per_weight']:.2f} bpw) from "
              f"{mb(before['file_size_bytes'])} ({before['bits_per_weight']:.2f} bpw); tensor types {after['tensor_types']}")
    if "requantized_from" in note:
        warn(f"{model.name} was already quantized ({', '.join(note['requantized_from'])}); requantizing compounds "
             "the error. Start from an F16/BF16 export when you can.")
    out.print(f"measure what it cost: edgeinfer compare {model} {output} --text your.txt")


def compare_llm_report(baseline: Path, candidates: list[Path], text: Path | None, window: int, max_tokens: int,
                       logits: Path | None, threads: int | None) -> dict:
    from edgeinfer.core.errors import ConfigError
    from edgeinfer.examples import SENTENCES
    from edgeinfer.pipelines.llm_eval import compare_llms

    if not candidates:
        raise ConfigError("give at least one candidate model after the baseline")
    with err.status("scoring") as status:
        return compare_llms(baseline, candidates, text or SENTENCES, window=window, max_tokens=max_tokens,
                            logits_file=logits, threads=threads, stage=status.update)


def print_llm_report(report: dict) -> None:
    table = Table(title=f"LLM quality on {Path(report['text']).name} ({report['tokens']} tokens, window {report['window']})")
    for col in ("model", "size", "bpw", "pp tok/s", "tg tok/s", "perplexity", "KL mean", "KL p99", "top-1 agree"):
        table.add_column(col, justify="left" if col == "model" else "right", overflow="fold",
                         min_width=10 if col == "model" else None)
    for r in report["rows"]:
        table.add_row(Path(r["model"]).name, mb(r["file_size_bytes"]), f"{r['bits_per_weight']:.2f}",
                      f"{r['pp_tokens_per_s']:.0f}", f"{r['tg_tokens_per_s']:.1f}", f"{r['perplexity']:.3f}",
                      f"{r['kl_mean']:.4f}" if "kl_mean" in r else "-", f"{r['kl_p99']:.4f}" if "kl_p99" in r else "-",
                      f"{r['top1_agreement']:.3f}" if "top1_agreement" in r else "-")
    console.print(table)


def check_llm(baseline: Path, candidates: list[Path], text: Path | None, max_kld: float | None,
              min_top1: float | None, as_json: bool, out: Console) -> int:
    from edgeinfer.core.errors import ConfigError

    if max_kld is None and min_top1 is None:
        raise ConfigError("give at least one budget for GGUF models: --max-kld or --min-top1")
    report = compare_llm_report(baseline, candidates, text, 256, 1024, None, None)
    problems = []
    for r in report["rows"][1:]:
        name = Path(r["model"]).name
        if max_kld is not None and r["kl_mean"] > max_kld:
            problems.append(f"{name}: mean KL divergence {r['kl_mean']:.4f} above {max_kld}")
        if min_top1 is not None and r["top1_agreement"] < min_top1:
            problems.append(f"{name}: top-1 agreement {r['top1_agreement']:.3f} below {min_top1}")
    report.update(violations=problems, passed=not problems)
    if as_json:
        print(json.dumps(report))
    else:
        print_llm_report(report)
        for p in problems:
            err.print(f"[red]REGRESSION[/red] {p}")
    verdict = (f"FAIL: {len(problems)} budget violation(s)" if problems
               else f"PASS: {len(candidates)} candidate(s) within budget")
    err.print(f"[{'red' if problems else 'green'}]{verdict}[/]")
    return 1 if problems else 0


@app.command()
def chat(
    model: Annotated[Path, typer.Argument(help="A .gguf chat model.")],
    system: Annotated[Optional[str], typer.Option(help="System prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, max=1 << 20, help="Tokens per reply.")] = 256,
    ctx: Annotated[Optional[int], typer.Option(min=16, max=1 << 20, help="Context size (default: the device's, else 2048).")] = None,
    gpu_layers: Annotated[Optional[int], typer.Option(min=0, max=100000, help="Layers to offload to a GPU (default: the device's).")] = None,
    device: Device = None,
    threads: Threads = None,
    allow_fallback: Fallback = False,
) -> None:
    """Chat with a GGUF model using its own chat template; tokens per second after each reply.

    Type a message and press Enter; an empty line or Ctrl-D ends the chat.
    """
    from edgeinfer.runtime.llama import LlamaRunner

    runner = LlamaRunner(model, _settings(device, threads, ctx, gpu_layers, allow_fallback), warn=warn)
    messages = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        stats = _print_stream(runner, console, False, messages=messages, max_tokens=max_tokens)
        console.print()
        if stats.generated_tokens + 1 >= max_tokens:
            err.print(f"[dim][reply cut at --max-tokens {max_tokens}][/dim]")
        messages.append({"role": "assistant", "content": stats.text})
        err.print(f"[dim]{stats.generated_tokens} tokens at {stats.generate_tps:.1f} tok/s[/dim]")
