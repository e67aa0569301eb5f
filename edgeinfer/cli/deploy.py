"""CLI commands that decide and deliver: optimize (search for a device, write a bundle) and verify."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from edgeinfer.cli.app import CliProgress, Device, Fallback, Force, Json, TrustSource, app, console, err, resolve_device

_OptimizeSource = Annotated[
    str,
    typer.Argument(
        help="What `export` takes (Hugging Face folder, factory, .pt2), an .onnx, or for LLMs a .gguf "
        "or a Hugging Face causal LM folder."
    ),
]
_OptimizeData = Annotated[
    Optional[str],
    typer.Option(
        "--data", help="Evaluation data, as for compare (.npz with labels, .txt of sentences, ...); ONNX models."
    ),
]
_OptimizeText = Annotated[
    Optional[Path],
    typer.Option(help="LLMs: the .txt scored against the baseline (default: edgeinfer's own sentences)."),
]
_OptimizeMaxDrop = Annotated[
    Optional[float],
    typer.Option(
        min=0.0, help="ONNX: largest metric drop against FP32 (accuracy points; 1 - mean cosine for embeddings)."
    ),
]
_OptimizeMaxKld = Annotated[
    Optional[float], typer.Option(min=0.0, help="LLMs: largest mean KL divergence from the baseline.")
]
_OptimizeMinTop1 = Annotated[
    Optional[float],
    typer.Option(min=0.0, max=1.0, help="LLMs: smallest top-1 agreement with the baseline (0-1)."),
]
_OptimizeMaxLatencyMs = Annotated[
    Optional[float], typer.Option(min=0.0, help="Largest p50 latency, ms (LLMs: per generated token).")
]
_OptimizeMaxSizeMb = Annotated[Optional[float], typer.Option("--max-size", min=0.0, help="Largest model file, MiB.")]
_OptimizeMaxMemoryMb = Annotated[
    Optional[float],
    typer.Option(
        min=0.0, help="Largest peak memory of a process running the model, MiB (default: the profile's memory_mb)."
    ),
]
_OptimizeCalib = Annotated[
    Optional[str],
    typer.Option(
        help="Calibration data for static INT8 (default: the evaluation data). An LLM: a text on which the "
        "importance-aware GGUF types (q4_k_m-imatrix, q4_0-imatrix, q3_k_m-imatrix) are calibrated and tried too."
    ),
]
_OptimizeTrainData = Annotated[
    Optional[str],
    typer.Option(
        help="package.module:function giving (train, eval) DataLoaders, or an .npz: adds structured "
        "pruning + fine-tuning candidates (the source must be a factory)."
    ),
]
_OptimizeKeepBest = Annotated[
    bool, typer.Option("--keep-best", help="Write the closest candidate's bundle when none meets the budgets.")
]
_OptimizeReportHtml = Annotated[
    Optional[Path],
    typer.Option("--report", help="Also write an HTML report: every candidate, metric against latency."),
]
_OptimizeArchive = Annotated[
    bool, typer.Option("--archive", help="Also write BUNDLE.tar.gz beside the folder (verify takes either).")
]
_OptimizeRecipe = Annotated[
    Optional[Path],
    typer.Option(help="A bundle's recipe.toml: replay it on SOURCE instead of searching, and check the result."),
]
_OptimizeExecutor = Annotated[
    str,
    typer.Option(
        help="serial (measure here, one after another); ray (candidates as Ray tasks; pip install "
        "'edgeinfer[ray]'): the chosen one is measured again here before it ships; or ssh://[USER@]HOST[:PORT]: "
        "ONNX candidates built here and measured on that device (it needs Python with onnxruntime and numpy; "
        "your ssh config, keys and agent; EDGEINFER_SSH_CONFIG names another ssh_config)."
    ),
]
_OptimizeRayAddress = Annotated[
    Optional[str],
    typer.Option(help="With --executor ray: the cluster to join (host:port, or auto); default: a local Ray."),
]
_OptimizeRayResource = Annotated[
    Optional[str],
    typer.Option(
        help="With --executor ray: a custom resource only the device's node declares (`ray start --resources "
        "'{\"NAME\": 1}'` there): every candidate is measured on that node, one at a time, and its figures ship."
    ),
]
_OptimizeRemotePython = Annotated[
    str, typer.Option(help="With --executor ssh://HOST: the Python on the device that has onnxruntime and numpy.")
]
_OptimizeNoCache = Annotated[
    bool,
    typer.Option(
        "--no-cache",
        help="Measure every candidate afresh (by default a repeated or interrupted run reuses the "
        "measurements cached by input sha256, recipe, data and machine).",
    ),
]


@app.command()
def optimize(
    source: _OptimizeSource,
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle folder to write.")],
    data: _OptimizeData = None,
    text: _OptimizeText = None,
    device: Device = None,
    max_drop: _OptimizeMaxDrop = None,
    max_kld: _OptimizeMaxKld = None,
    min_top1: _OptimizeMinTop1 = None,
    max_latency_ms: _OptimizeMaxLatencyMs = None,
    max_size_mb: _OptimizeMaxSizeMb = None,
    max_memory_mb: _OptimizeMaxMemoryMb = None,
    objective: Annotated[str, typer.Option(help="latency or size: what to minimise within the budgets.")] = "latency",
    calib: _OptimizeCalib = None,
    train_data: _OptimizeTrainData = None,
    runs: Annotated[int, typer.Option(min=3, max=100000, help="Interleaved timing runs.")] = 20,
    keep_best: _OptimizeKeepBest = False,
    report_html: _OptimizeReportHtml = None,
    archive: _OptimizeArchive = False,
    recipe: _OptimizeRecipe = None,
    executor: _OptimizeExecutor = "serial",
    ray_address: _OptimizeRayAddress = None,
    ray_resource: _OptimizeRayResource = None,
    remote_python: _OptimizeRemotePython = "python3",
    no_cache: _OptimizeNoCache = False,
    trust_source: TrustSource = False,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Measure the candidates the device allows on your data against the baseline, choose the
    fastest (or smallest) within the budgets, and write a deploy bundle that `edgeinfer verify`
    checks on the device.

    ONNX models: FP32, graph fusions, dynamic / static INT8 per channel and per tensor, FP16 and
    INT4 where the profile has them, static INT8 with its noisiest nodes kept in float when it
    misses only --max-drop, structured pruning + fine-tuning with --train-data; budgets --max-drop,
    --max-latency-ms, --max-size, --max-memory-mb.
    LLMs (.gguf or a causal LM folder, exported to F16 GGUF first): the llama.cpp types that fit
    the memory budget (Q8_0 ... Q4_0), scored on --text; budgets --max-kld, --min-top1, and the same
    latency (per token), size and memory budgets.

    Exit 0 with a bundle; exit 1 when no candidate meets the budgets (the closest is named; no
    bundle unless --keep-best); exit 2 on bad input; 130 when interrupted (run it again to resume).

    Examples: edgeinfer optimize edgeinfer.examples.digits:lenet --device x86-avx512-vnni
    --data digits-test.npz --max-drop 0.01 -o lenet-bundle;
    edgeinfer optimize smollm2-hf/ --device x86-laptop --max-kld 0.05 --max-memory-mb 1024 -o smollm2-bundle
    """
    from edgeinfer.core.errors import ConfigError, parse_choice
    from edgeinfer.pipelines.optimize import Budgets, Objective
    from edgeinfer.pipelines.optimize import optimize as run

    if data is not None and text is not None:
        raise ConfigError("give --data (ONNX models) or --text (LLMs), not both")
    profile, _ = resolve_device(device, None)
    budgets = Budgets(max_drop, max_latency_ms, max_size_mb, max_memory_mb, max_kld, min_top1)
    with CliProgress("optimizing", as_json=as_json) as progress:
        report = run(
            source,
            output,
            data=str(text) if text is not None else data,
            profile=profile,
            budgets=budgets,
            objective=parse_choice(Objective, objective, "objective"),
            calib=calib,
            train_data=train_data,
            runs=runs,
            keep_best=keep_best,
            recipe=recipe,
            html=report_html,
            trust_source=trust_source,
            use_cache=not no_cache,
            executor=executor,
            ray_address=ray_address,
            remote_python=remote_python,
            ray_resource=ray_resource,
            force=force,
            progress=progress,
        )
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        _print_candidates(report)
    if report.replay is not None:
        same = "identical bytes" if report.replay["identical_bytes"] else "different bytes (checked on the metric)"
        err.print(f"replayed {recipe}: {same}")
    if report.chosen is None:
        closest = next((c for c in report.candidates if c.name == report.closest), None)
        why = f" ({'; '.join(closest.failed)})" if closest and closest.failed else ""
        err.print(f"[red]no candidate met the budgets[/red]; closest: {report.closest}{why}", highlight=False)
        if keep_best and report.closest:
            err.print(f"wrote the closest candidate's bundle {output} (--keep-best)")
        sys.exit(1)
    err.print(f"wrote {output}/ ({report.chosen}); check it on the device: edgeinfer verify {output}")
    if archive:
        from edgeinfer.pipelines.deploy.bundle import write_archive

        err.print(f"wrote {write_archive(output, force)}")


def _print_candidates(report) -> None:
    """Every candidate's figures and why it missed the budgets, the chosen one marked."""
    llm = report.kind == "gguf"
    table = Table(title=f"optimize for {report.device} ({report.task}; objective: {report.objective})")
    cols = ["candidate", "ms/token" if llm else "p50 ms", f"speedup vs {'baseline' if llm else 'FP32'} (95% CI)"]
    cols += ["KL" if llm else "drop", "size MiB", "peak MiB", "budgets"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("candidate", "budgets") else "right", overflow="fold")
    for c in report.candidates:
        mark = " [green]<- chosen[/green]" if c.name == report.chosen else ""
        mark += " [dim](Pareto)[/dim]" if c.name in report.pareto else ""
        mark += " [dim](cached)[/dim]" if c.cached else ""
        shared = c.measured_on is not None and c.measured_on.startswith("ray:")
        mark += f" [dim](on {c.measured_on}: shared node)[/dim]" if shared else ""
        speed = (
            f"{c.speedup:.2f}x ({c.speedup_ci95[0]:.2f}-{c.speedup_ci95[1]:.2f})"
            if c.speedup is not None and c.speedup_ci95
            else "-"
        )
        if c.p50_ms is not None:
            latency = f"{c.p50_ms:.3f}"
        else:
            latency = "no target" if c.measured and report.stand_in else "-"
        table.add_row(
            c.name + mark,
            latency,
            speed,
            f"{c.drop:.4f}" if c.drop is not None else "-",
            f"{c.size_bytes / 2**20:.2f}" if c.size_bytes else "-",
            f"{c.memory_mb:.0f}" if c.memory_mb is not None else "-",
            "met" if c.met else "[red]" + "; ".join(c.failed) + "[/red]",
        )
    console.print(table)
    if report.stand_in:
        err.print(f"[yellow]{report.stand_in}[/yellow]", highlight=False)
    if report.remote:
        err.print(f"measured on the device: {report.remote}", highlight=False)


@app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `edgeinfer optimize`, or its .tar.gz.")],
    allow_fallback: Fallback = False,
    enforce_latency: Annotated[
        bool,
        typer.Option("--enforce-latency", help="Fail when p50 latency or peak memory is above the bundle's budget."),
    ] = False,
    runs: Annotated[int, typer.Option(min=3, max=100000, help="Timed runs of the golden batch.")] = 20,
    arch: Annotated[
        str,
        typer.Option(
            help="native (this machine) or arm64: the golden outputs on an emulated ARM64 CPU (QEMU user mode, "
            "an aarch64 Python and the runtime's aarch64 wheels, fetched once into the cache; needs the Debian "
            "mirror and PyPI the first time). Latency is then the emulator's, not comparable."
        ),
    ] = "native",
    as_json: Json = False,
) -> None:
    """The acceptance test on the device: every checksum, the providers, the golden outputs within
    tolerance (an LLM: KL and top-1 on the golden tokens), latency and peak memory against the
    budgets. Exit 0 when all pass, 1 when a check fails, 2 on bad input.

    Example: edgeinfer verify lenet-bundle --arch arm64 (before the board arrives)."""
    from edgeinfer.pipelines.deploy.verify import verify as run

    with CliProgress("verifying", as_json=as_json, announce=False) as progress:
        report = run(
            bundle, allow_fallback=allow_fallback, enforce_latency=enforce_latency, runs=runs, arch=arch,
            progress=progress,
        )  # fmt: skip
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        if report.machine:
            console.print(f"machine: {report.machine}", highlight=False)
        for c in report.checks:
            mark = "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]"
            console.print(f"{mark} {c.name}: {c.detail}", highlight=False)
        if report.latency_ms:
            unit = " per generated token" if report.kind == "gguf" else ""
            emulated = " (emulated, not comparable)" if report.machine else ""
            console.print(f"p50 {report.latency_ms['p50']:.3f} ms{unit} on {', '.join(report.providers)}{emulated}")
        if report.peak_memory_mb is not None:
            console.print(f"peak memory {report.peak_memory_mb:.0f} MiB (a fresh process)")
        for note in report.notes:
            console.print(f"note: {note}", highlight=False)
    sys.exit(0 if report.passed else 1)
