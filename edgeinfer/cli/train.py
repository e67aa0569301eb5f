"""CLI commands for train-time compression: prune, distill, qat (each ends in a compared ONNX file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from edgeinfer.cli.app import CliProgress, Force, Json, app, console, mb

Data = Annotated[
    str,
    typer.Option(
        help="package.module:function returning (train DataLoader, eval DataLoader), "
        "or an .npz with `input` and `labels` (split 80/20)."
    ),
]
Epochs = Annotated[int, typer.Option(min=0, max=100000, help="Training epochs.")]
Lr = Annotated[float, typer.Option(help="Learning rate (AdamW, cosine schedule).")]
# --batch-size as in quantize and compare; --batch, the older spelling, still works.
Batch = Annotated[int, typer.Option("--batch-size", "--batch", min=1, max=65536, help="Batch size for .npz data.")]
Seed = Annotated[int, typer.Option(help="Seed: the same seed gives the same model.")]
Runs = Annotated[int, typer.Option(min=1, max=100000, help="Interleaved ONNX Runtime timing runs for the comparison.")]
Out = Annotated[Path, typer.Option("--output", "-o", help="The ONNX file to write.")]


def _comparison(title: str, result: dict, extra: list[tuple[str, str]], as_json: bool) -> None:
    art = result["artifact"]
    comp = art.steps[-1].metrics["comparison"]
    if as_json:
        print(
            json.dumps(
                {
                    "output": str(art.path),
                    "step": art.steps[-1].op,
                    "config": art.steps[-1].config,
                    "metrics": art.steps[-1].metrics,
                    "validation": art.steps[0].metrics,
                },
                default=str,
            )
        )
        return
    table = Table(title=title, show_header=True)
    for col in ("", "baseline (ONNX Runtime)", "result (ONNX Runtime)"):
        table.add_column(col)
    table.add_row(
        "accuracy", f"{comp['baseline_accuracy']:.4f}", f"{comp['accuracy']:.4f} ({comp['delta'] * 100:+.2f} pts)"
    )
    lo, hi = comp["speedup_ci95"]
    table.add_row(
        "p50 latency",
        f"{comp['baseline_p50_ms']:.3f} ms",
        f"{comp['p50_ms']:.3f} ms ({comp['speedup']:.2f}x, 95% CI {lo:.2f}-{hi:.2f})",
    )
    table.add_row("file size", mb(comp["baseline_file_size_bytes"]), mb(comp["file_size_bytes"]))
    for k, v in extra:
        table.add_row(k, "", v)
    console.print(table)
    if comp["speedup"] < 1 and hi < 1:
        console.print(f"[red]SLOWER[/red] than the baseline in ONNX Runtime ({comp['speedup']:.2f}x)")
    console.print(f"wrote {art.path} (sidecar {art.sidecar})")


_PruneMethod = Annotated[
    str,
    typer.Option(
        help="structured (channels removed: really faster), unstructured or 2:4 (zeros: smaller when compressed, not faster on CPUs)."
    ),
]
_PruneRatio = Annotated[
    float, typer.Option(help="Fraction of channels (structured) or weights (unstructured) to remove, in (0, 1).")
]
_PruneImportance = Annotated[
    str, typer.Option(help="Structured: l1, l2 (weight norms) or taylor (first-order, from gradients).")
]
_PruneGlobalRanking = Annotated[
    bool,
    typer.Option("--global/--uniform", help="Rank channels across all layers, or prune every layer by the same ratio."),
]
_PruneIgnore = Annotated[
    Optional[list[str]], typer.Option(help="Module name to keep whole (the output layer always is). Repeatable.")
]
_PruneSteps = Annotated[
    int,
    typer.Option(min=1, max=1000, help="Iterative pruning: reach --ratio in this many prune + fine-tune rounds."),
]
_PruneFinetuneEpochs = Annotated[
    int, typer.Option(min=0, max=100000, help="Fine-tuning epochs after each pruning step.")
]
_PruneDistill = Annotated[
    bool, typer.Option("--distill", help="Fine-tune against the unpruned model's outputs (knowledge distillation).")
]


@app.command()
def prune(
    model: Annotated[str, typer.Argument(help="package.module:function returning (module, {name: example input}).")],
    output: Out,
    data: Data,
    method: _PruneMethod = "structured",
    ratio: _PruneRatio = 0.5,
    importance: _PruneImportance = "l2",
    global_ranking: _PruneGlobalRanking = False,
    ignore: _PruneIgnore = None,
    steps: _PruneSteps = 1,
    finetune_epochs: _PruneFinetuneEpochs = 3,
    lr: Lr = 1e-3,
    distill: _PruneDistill = False,
    batch: Batch = 64,
    seed: Seed = 0,
    runs: Runs = 20,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Prune a model, fine-tune it, export it, and compare it with the unpruned model.

    Structured pruning removes whole channels and rewrites the model through Torch-Pruning's
    dependency graph (residual additions and concatenations stay consistent), so MACs, size and
    latency really drop. Unstructured and 2:4 pruning only zero weights: ONNX Runtime on a CPU
    runs them at the same speed, and this command says so.

    Example:

      edgeinfer prune edgeinfer.examples.digits:resnet_trained -o resnet-p50.onnx --data edgeinfer.examples.digits:loaders --ratio 0.5 --finetune-epochs 3
    """
    from edgeinfer.pipelines.train import prune_model

    with CliProgress("pruning", epochs="fine-tune", as_json=as_json) as progress:
        result = prune_model(
            model,
            output,
            data,
            method=method,
            ratio=ratio,
            importance=importance,
            global_ranking=global_ranking,
            ignore=tuple(ignore or ()),
            steps=steps,
            finetune_epochs=finetune_epochs,
            lr=lr,
            distill=distill,
            batch=batch,
            seed=seed,
            runs=runs,
            force=force,
            progress=progress,
        )
    rep = result["report"]
    extra = [("torch accuracy", f"{result['accuracy_before']:.4f} -> {result['accuracy_after']:.4f}")]
    if method == "structured":
        extra += [
            ("MACs", f"{rep.macs_before:,} -> {rep.macs_after:,} ({rep.macs_after / rep.macs_before:.2f}x)"),
            ("parameters", f"{rep.params_before:,} -> {rep.params_after:,}"),
        ]
        extra += [
            (f"  {n}", f"{v['channels_before']} -> {v['channels_after']} channels") for n, v in rep.layers.items()
        ]
    else:
        extra += [(f"  {n}", f"{v['sparsity']:.1%} zeros") for n, v in rep.layers.items()]
    _comparison(f"{method} pruning, ratio {ratio}", result, extra, as_json)
    if method != "structured" and not as_json:
        console.print(
            "note: ONNX Runtime's CPU kernels do not skip zeros, so sparsity does not make this model "
            "faster; it shrinks the file once compressed (zip, gzip)"
        )


@app.command()
def distill(
    teacher: Annotated[
        str, typer.Option(help="The trained teacher: package.module:function returning (module, inputs).")
    ],
    student: Annotated[
        str,
        typer.Option(
            help="The student: package.module:function returning (module, inputs); it must predict the same classes."
        ),
    ],
    output: Out,
    data: Data,
    epochs: Epochs = 10,
    lr: Lr = 2e-3,
    temperature: Annotated[
        float, typer.Option(min=0.01, max=1000.0, help="Softmax temperature of the soft targets.")
    ] = 4.0,
    alpha: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Weight of the teacher's soft targets; 1 - alpha goes to the labels."),
    ] = 0.7,
    feature: Annotated[
        Optional[list[str]],
        typer.Option(
            help="TEACHER_MODULE:STUDENT_MODULE features matched (MSE) through a learned projection. Repeatable."
        ),
    ] = None,
    batch: Batch = 64,
    seed: Seed = 0,
    runs: Runs = 20,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Train a smaller student on a teacher's softened outputs, export it, compare it with the teacher.

    Example:

      edgeinfer distill --teacher edgeinfer.examples.digits:lenet --student edgeinfer.examples.digits:lenet_half -o student.onnx --data edgeinfer.examples.digits:loaders
    """
    from edgeinfer.core.errors import ConfigError
    from edgeinfer.pipelines.train import distill_model

    pairs = []
    for f in feature or []:
        t, sep, s = f.partition(":")
        if not sep or not t or not s:
            raise ConfigError(f"--feature {f!r} must be TEACHER_MODULE:STUDENT_MODULE")
        pairs.append((t, s))
    with CliProgress("distilling", epochs="distill", as_json=as_json) as progress:
        result = distill_model(
            teacher,
            student,
            output,
            data,
            epochs=epochs,
            lr=lr,
            temperature=temperature,
            alpha=alpha,
            features=tuple(pairs),
            batch=batch,
            seed=seed,
            runs=runs,
            force=force,
            progress=progress,
        )
    m = result["metrics"]
    _comparison(
        "distillation (baseline: the teacher)",
        result,
        [("parameters", f"{m['teacher_params']:,} -> {m['student_params']:,}")],
        as_json,
    )


@app.command()
def qat(
    model: Annotated[str, typer.Argument(help="package.module:function returning (trained module, inputs).")],
    output: Out,
    data: Data,
    epochs: Epochs = 3,
    lr: Lr = 1e-4,
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--per-tensor", help="Weight scales per output channel or one per tensor.")
    ] = True,
    freeze_after: Annotated[int, typer.Option(min=0, help="Epochs after which activation ranges are frozen.")] = 2,
    batch: Batch = 64,
    seed: Seed = 0,
    runs: Runs = 20,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Quantization-aware training, exported as an INT8 QDQ ONNX model, compared with the float model.

    BatchNorm is folded into the convolutions, then inputs, weights and outputs of every Conv and
    Linear are fake-quantized with the static PTQ path's scheme (uint8 asymmetric activations,
    int8 symmetric weights), so `quantize --method static` and `qat` results compare directly.

    Example:

      edgeinfer qat edgeinfer.examples.digits:dscnn_trained -o dscnn-qat.onnx --data edgeinfer.examples.digits:loaders --per-tensor
    """
    from edgeinfer.pipelines.train import qat_model

    with CliProgress("QAT", epochs="QAT", as_json=as_json) as progress:
        result = qat_model(
            model,
            output,
            data,
            epochs=epochs,
            lr=lr,
            per_channel=per_channel,
            freeze_after=freeze_after,
            batch=batch,
            seed=seed,
            runs=runs,
            force=force,
            progress=progress,
        )
    m = result["metrics"]
    _comparison(
        "quantization-aware training (baseline: the float model)",
        result,
        [
            (
                "torch accuracy",
                f"float {m['float_accuracy']:.4f}, fake-quant before training "
                f"{m['fake_quant_accuracy_before_training']:.4f}, after "
                f"{m['fake_quant_accuracy_after']:.4f}",
            )
        ],
        as_json,
    )
