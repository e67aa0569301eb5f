"""CLI commands that decide and deliver: optimize (search for a device, write a bundle) and verify."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from edgeinfer.cli.app import CliProgress, Device, Fallback, Force, Json, TrustSource, app, console, err, resolve_device


@app.command()
def optimize(
    source: Annotated[
        str, typer.Argument(help="What `export` takes (Hugging Face folder, factory, .pt2), or an .onnx.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle folder to write.")],
    data: Annotated[
        str, typer.Option("--data", help="Evaluation data, as for compare (.npz with labels, .txt of sentences, ...).")
    ],
    device: Device = None,
    max_drop: Annotated[
        Optional[float],
        typer.Option(
            min=0.0, help="Largest metric drop against FP32 (accuracy points; 1 - mean cosine for embeddings)."
        ),
    ] = None,
    max_latency_ms: Annotated[Optional[float], typer.Option(min=0.0, help="Largest p50 latency, ms.")] = None,
    max_size_mb: Annotated[
        Optional[float], typer.Option("--max-size", min=0.0, help="Largest model file, MiB.")
    ] = None,
    objective: Annotated[str, typer.Option(help="latency or size: what to minimise within the budgets.")] = "latency",
    calib: Annotated[
        Optional[str], typer.Option(help="Calibration data for static INT8 (default: the evaluation data).")
    ] = None,
    runs: Annotated[int, typer.Option(min=3, max=100000, help="Interleaved timing runs.")] = 20,
    keep_best: Annotated[
        bool, typer.Option("--keep-best", help="Write the closest candidate's bundle when none meets the budgets.")
    ] = False,
    report_html: Annotated[
        Optional[Path],
        typer.Option("--report", help="Also write an HTML report: every candidate, metric against latency."),
    ] = None,
    archive: Annotated[
        bool, typer.Option("--archive", help="Also write BUNDLE.tar.gz beside the folder (verify takes either).")
    ] = False,
    recipe: Annotated[
        Optional[Path],
        typer.Option(help="A bundle's recipe.toml: replay it on SOURCE instead of searching, and check the result."),
    ] = None,
    trust_source: TrustSource = False,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Measure the candidates the device allows (FP32, graph fusions, dynamic / static INT8 per
    channel and per tensor, FP16) on your data against FP32, choose the fastest (or smallest) within
    the budgets, and write a deploy bundle that `edgeinfer verify` checks on the device.

    Exit 0 with a bundle; exit 1 when no candidate meets the budgets (the closest is named; no
    bundle unless --keep-best); exit 2 on bad input.

    Example: edgeinfer optimize edgeinfer.examples.digits:lenet --device x86-avx512-vnni
    --data digits-test.npz --max-drop 0.01 -o lenet-bundle
    """
    from edgeinfer.core.errors import parse_choice
    from edgeinfer.pipelines.optimize import Budgets, Objective
    from edgeinfer.pipelines.optimize import optimize as run

    profile, _ = resolve_device(device, None)
    budgets = Budgets(max_drop, max_latency_ms, max_size_mb)
    with CliProgress("optimizing") as progress:
        report = run(
            source,
            output,
            data=data,
            profile=profile,
            budgets=budgets,
            objective=parse_choice(Objective, objective, "objective"),
            calib=calib,
            runs=runs,
            keep_best=keep_best,
            recipe=recipe,
            html=report_html,
            trust_source=trust_source,
            force=force,
            progress=progress,
        )
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        table = Table(title=f"optimize for {report.device} ({report.task}; objective: {report.objective})")
        for col in ("candidate", "p50 ms", "speedup vs FP32 (95% CI)", "drop", "size MiB", "budgets"):
            table.add_column(col, justify="left" if col in ("candidate", "budgets") else "right", overflow="fold")
        for c in report.candidates:
            mark = " [green]<- chosen[/green]" if c.name == report.chosen else ""
            mark += " [dim](Pareto)[/dim]" if c.name in report.pareto else ""
            speed = (
                f"{c.speedup:.2f}x ({c.speedup_ci95[0]:.2f}-{c.speedup_ci95[1]:.2f})"
                if c.speedup is not None and c.speedup_ci95
                else "-"
            )
            table.add_row(
                c.name + mark,
                f"{c.p50_ms:.3f}" if c.p50_ms is not None else "-",
                speed,
                f"{c.drop:.4f}" if c.drop is not None else "-",
                f"{c.size_bytes / 2**20:.2f}" if c.size_bytes else "-",
                "met" if c.met else "[red]" + "; ".join(c.failed) + "[/red]",
            )
        console.print(table)
    if report.replay is not None:
        same = "identical bytes" if report.replay["identical_bytes"] else "different bytes (checked on the metric)"
        err.print(f"replayed {recipe}: {same}")
    if report.chosen is None:
        err.print(f"[red]no candidate met the budgets[/red]; closest: {report.closest}")
        if keep_best and report.closest:
            err.print(f"wrote the closest candidate's bundle {output} (--keep-best)")
        sys.exit(1)
    err.print(f"wrote {output}/ ({report.chosen}); check it on the device: edgeinfer verify {output}")
    if archive:
        from edgeinfer.pipelines.bundle import write_archive

        err.print(f"wrote {write_archive(output, force)}")


@app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `edgeinfer optimize`, or its .tar.gz.")],
    allow_fallback: Fallback = False,
    enforce_latency: Annotated[
        bool, typer.Option("--enforce-latency", help="Fail when p50 latency is above the bundle's budget.")
    ] = False,
    runs: Annotated[int, typer.Option(min=3, max=100000, help="Timed runs of the golden batch.")] = 20,
    as_json: Json = False,
) -> None:
    """The acceptance test on the device: every checksum, the providers, the golden outputs within
    tolerance, latency against the budget. Exit 0 when all pass, 1 when a check fails, 2 on bad input."""
    from edgeinfer.pipelines.verify import verify as run

    report = run(bundle, allow_fallback=allow_fallback, enforce_latency=enforce_latency, runs=runs)
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        for c in report.checks:
            mark = "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]"
            console.print(f"{mark} {c.name}: {c.detail}", highlight=False)
        if report.latency_ms:
            console.print(f"p50 {report.latency_ms['p50']:.3f} ms on {', '.join(report.providers)}")
    sys.exit(0 if report.passed else 1)
