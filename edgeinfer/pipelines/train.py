"""`edgeinfer prune / distill / qat`: train-time compression from a model factory and data,
ending in an exported, validated ONNX file compared with the unmodified model in ONNX Runtime.

The model is `package.module:function` returning (module, inputs), as for export; data is
`package.module:function` returning (train DataLoader, eval DataLoader), or an .npz with
`input` and `labels` (split 80/20, seeded).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeinfer.compress.distill import DistillConfig
from edgeinfer.compress.prune import PruneConfig
from edgeinfer.compress.qat import QatConfig
from edgeinfer.compress.training import TrainConfig
from edgeinfer.core.artifact import Step
from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import ConfigError, InputError
from edgeinfer.core.io import check_output
from edgeinfer.core.progress import QUIET, Progress


def load_data(spec: str, batch: int = 64, seed: int = 0):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from edgeinfer.compress.training import Loaders
    from edgeinfer.core.formats import load_npz
    from edgeinfer.exporters.source import import_factory

    if spec.endswith(".npz"):
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"data file {path} does not exist")
        d = load_npz(path, "training data")
        if "input" not in d or "labels" not in d:
            raise InputError(f"{path} needs arrays named `input` and `labels`; it has {', '.join(d)}")
        x, y = torch.from_numpy(d["input"]), torch.from_numpy(d["labels"]).long()
        if len(x) != len(y) or len(x) < 10:
            raise InputError(f"{path}: {len(x)} inputs and {len(y)} labels; need as many of each, at least 10")
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        cut = int(len(x) * 0.8)
        tr, ev = order[:cut], order[cut:]
        return Loaders(
            DataLoader(
                TensorDataset(x[tr], y[tr]),
                batch_size=batch,
                shuffle=True,
                generator=torch.Generator().manual_seed(seed),
            ),
            DataLoader(TensorDataset(x[ev], y[ev]), batch_size=256),
        )
    result = import_factory(spec)()
    if not isinstance(result, tuple) or len(result) != 2:
        raise InputError(f"data factory {spec} must return (train DataLoader, eval DataLoader)")
    train = result[0]
    if isinstance(getattr(train, "generator", None), torch.Generator):
        train.generator.manual_seed(seed)  # --seed decides the shuffling too
    return Loaders(*result)


def load_model(spec: str):
    from edgeinfer.exporters.source import call_factory

    if Path(spec).is_dir():
        raise InputError(
            f"{spec}: train-time compression takes a factory (package.module:function) from the CLI; "
            "for Hugging Face encoders use edgeinfer.compress.distill.distill_encoder from Python"
        )
    module, inputs, axes = call_factory(spec)
    if len(inputs) != 1:
        raise InputError(f"{spec}: prune/distill/qat train on single-input models; it has {', '.join(inputs)}")
    return module, inputs, axes


def _eval_npz(loaders, folder: Path) -> Path:
    xs, ys = [], []
    for x, y in loaders.eval:
        xs.append(x.numpy())
        ys.append(y.numpy())
    path = folder / "eval.npz"
    np.savez(path, input=np.concatenate(xs), labels=np.concatenate(ys))
    return path


def export_module(
    module,
    inputs,
    axes,
    output: Path,
    description: dict,
    steps,
    *,
    exporter: str = "auto",
    atol: float | None = None,
    postprocess=None,
    force: bool = False,
):
    """Export an in-memory module (a pruned, distilled or QAT model) to ONNX, validated like `export`.

    Args:
        module, inputs, axes: the module, its example inputs by name, and their dynamic axes.
        output: the .onnx file to write.
        description: the sidecar's `source` record; steps: the compression steps that made the module.
        exporter, atol, postprocess: as for export_source; force: overwrite an existing output.
    """
    from edgeinfer.exporters.onnx import DEFAULT_OPSET, Exporter, OnnxExportConfig
    from edgeinfer.exporters.source import source_from_module
    from edgeinfer.pipelines.export import export_source

    cfg = OnnxExportConfig(opset=DEFAULT_OPSET, exporter=Exporter(exporter), atol=atol)
    return export_source(
        source_from_module(module, inputs, axes, description),
        output,
        cfg,
        steps=steps,
        postprocess=postprocess,
        force=force,
    )


def checkpoint_path(output: Path) -> Path:
    """Where training keeps the last good epoch's weights until the export succeeds."""
    return output.parent / f"{output.name}.last-good.safetensors"


def finish(
    module,
    baseline,
    inputs,
    axes,
    output: Path,
    spec: str,
    step: Step,
    loaders,
    *,
    runs: int = 20,
    exporter: str = "auto",
    atol: float | None = None,
    progress: Progress = QUIET,
    postprocess=None,
    force: bool = False,
) -> dict[str, Any]:
    """Export the result, export the unmodified model beside it in a temporary folder, and compare
    both in ONNX Runtime on the eval data: accuracy and interleaved latency side by side."""
    from edgeinfer.pipelines.compare import compare_models

    progress.stage(f"exporting {output.name}")
    art = export_module(
        module,
        inputs,
        axes,
        output,
        {"kind": "factory", "factory": spec, "class": type(module).__name__},
        [step],
        exporter=exporter,
        atol=atol,
        postprocess=postprocess,
        force=force,
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline.onnx"
        progress.stage("exporting the unmodified model for the comparison")
        export_module(baseline, inputs, axes, base, {"kind": "factory", "factory": spec}, [])
        progress.stage("comparing in ONNX Runtime")
        report = compare_models(base, [output], str(_eval_npz(loaders, Path(tmp))), runs=runs)
    base_row, row = report.rows[0], report.rows[-1]
    art.steps[-1].metrics["comparison"] = {
        "speedup": row.speedup,
        "speedup_ci95": list(row.speedup_ci95),
        "p50_ms": row.latency_ms["p50"],
        "baseline_p50_ms": base_row.latency_ms["p50"],
        "accuracy": row.metrics.get("accuracy"),
        "baseline_accuracy": base_row.metrics.get("accuracy"),
        "delta": row.delta,
        "file_size_bytes": row.file_size_bytes,
        "baseline_file_size_bytes": base_row.file_size_bytes,
    }
    art.save()
    checkpoint_path(output).unlink(missing_ok=True)
    return {"artifact": art, "comparison": report}


@dataclass(frozen=True)
class PruneTraining(PassConfig):
    """Pruning with its fine-tuning: the config of the prune pass.

    Args:
        prune: what to remove (method, ratio, importance, ...; see compress.prune.PruneConfig).
        finetune: fine-tuning after each pruning step (epochs 0: none).
        distill: fine-tune against the unpruned model's soft targets instead of the labels alone.
        batch: training batch size (data given as an .npz).
    """

    prune: PruneConfig = field(default_factory=PruneConfig)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=0))
    distill: bool = False
    batch: int = 64

    what: ClassVar[str] = "pruning config"


@dataclass(frozen=True)
class DistillTraining(PassConfig):
    """Distillation: the config of the distill pass (the student is the pass's input).

    Args:
        teacher: the teacher's factory, `package.module:function` (runs that code).
        distill: temperature, alpha and feature pairs (see compress.distill.DistillConfig).
        train: the training run; batch: training batch size.
    """

    teacher: str
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=2e-3))
    batch: int = 64

    what: ClassVar[str] = "distillation config"

    def check(self) -> None:
        from edgeinfer.core.factory import is_factory_spec

        if not is_factory_spec(self.teacher):
            raise ConfigError(f"teacher {self.teacher!r} must be package.module:function")


@dataclass(frozen=True)
class QatTraining(PassConfig):
    """Quantization-aware training: the config of the qat pass.

    Args:
        qat: per-channel weights, when the activation ranges freeze (see compress.qat.QatConfig).
        train: the training run; batch: training batch size.
    """

    qat: QatConfig = field(default_factory=QatConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-4))
    batch: int = 64

    what: ClassVar[str] = "QAT config"


def prune_model(
    spec: str,
    output: Path,
    data: str,
    *,
    method: str = "structured",
    ratio: float = 0.5,
    importance: str = "l2",
    global_ranking: bool = False,
    ignore: tuple[str, ...] = (),
    steps: int = 1,
    finetune_epochs: int = 0,
    lr: float = 1e-3,
    distill: bool = False,
    batch: int = 64,
    seed: int = 0,
    runs: int = 20,
    force: bool = False,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """`prune` with the CLI's flat options (method, ratio, importance, global_ranking, ignore, steps:
    the PruneConfig; finetune_epochs, lr, seed: the fine-tuning TrainConfig); see `prune`."""
    job = PruneTraining(
        PruneConfig(method, ratio, importance.lower(), global_ranking, tuple(ignore), steps),  # type: ignore[arg-type]
        TrainConfig(epochs=finetune_epochs, lr=lr, seed=seed),
        distill,
        batch,
    )
    return prune(spec, output, data, job, runs=runs, force=force, progress=progress)


def prune(
    spec: str,
    output: Path,
    data: str,
    job: PruneTraining = PruneTraining(),
    *,
    runs: int = 20,
    force: bool = False,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """Prune the model a factory returns, fine-tune it, export it, and compare it with the unpruned model.

    Args:
        spec: `package.module:function` returning (module, {name: example input}); runs that code.
        output: the .onnx file to write (the unpruned model is exported beside it for the comparison).
        data: a factory returning (train, eval) DataLoaders, or an .npz with `input` and `labels`.
        job: the pruning and its fine-tuning (PruneTraining).
        runs: interleaved ONNX Runtime timing runs; force: overwrite an existing output.
        progress: told each stage and each finished epoch (edgeinfer.core.progress).

    Returns the report: metrics (MACs, parameters, channels per layer), the artifact, the comparison.
    """
    import copy

    import torch

    from edgeinfer.compress import prune
    from edgeinfer.compress.distill import make_loss
    from edgeinfer.compress.training import accuracy, check_batch, train

    output = Path(output)
    check_output(output, [], force)
    cfg, tcfg = job.prune, job.finetune
    module, inputs, axes = load_model(spec)
    loaders = load_data(data, job.batch, tcfg.seed)
    check_batch(module, loaders)
    original = copy.deepcopy(module).eval()
    example = next(iter(inputs.values()))
    acc_before = accuracy(original, loaders.eval)
    history = []

    def finetune(model, step: int) -> None:
        if tcfg.epochs <= 0:
            return
        progress.stage(f"fine-tuning after pruning step {step + 1}/{cfg.steps}")
        # Distilling from the unpruned model; with no feature pairs make_loss registers no hooks.
        loss_fn = make_loss(original, model, example, DistillConfig())[0] if job.distill else None
        h = train(model, loaders, tcfg, loss_fn, progress=progress, checkpoint=checkpoint_path(output))
        history.extend({**r, "step": step + 1} for r in h.epochs)

    def grad_batch(model) -> None:
        x, y = next(iter(loaders.train))
        torch.nn.functional.cross_entropy(model(x), y).backward()

    progress.stage(f"{cfg.method.value} pruning, ratio {cfg.ratio}")
    if cfg.method is prune.PruneMethod.STRUCTURED:
        pruned, rep = prune.structured(module, example, cfg, grad_batch, finetune)
    else:
        pruned, rep = prune.sparsify(module, cfg)
        if tcfg.epochs > 0:
            # Pruned weights get zero gradients, so AdamW (no weight decay) never moves them: the
            # zeros survive fine-tuning and the reported sparsity stays true.
            masked = [
                (p, (p != 0).float()) for n, p in pruned.named_parameters() if n.endswith("weight") and p.dim() > 1
            ]
            hooks = [p.register_hook(lambda g, m=m: g * m) for p, m in masked]
            try:
                finetune(pruned, 0)
            finally:
                for h in hooks:
                    h.remove()
            with torch.no_grad():
                for p, m in masked:
                    p.mul_(m)
    acc_after = accuracy(pruned, loaders.eval)
    metrics = {
        **rep.as_dict(),
        "torch_accuracy_before": acc_before,
        "torch_accuracy_after": acc_after,
        "finetune": history,
    }
    config = {
        **cfg.to_dict(),
        "finetune_epochs": tcfg.epochs,
        "lr": tcfg.lr,
        "distill_from_unpruned": job.distill,
        "data": data,
        "seed": tcfg.seed,
        "pass": job.to_dict(),
    }
    step = Step("prune", config, metrics)
    return {
        **finish(
            pruned, original, inputs, axes, output, spec, step, loaders, runs=runs, progress=progress, force=force
        ),
        "report": rep,
        "accuracy_before": acc_before,
        "accuracy_after": acc_after,
    }


def distill_model(
    teacher_spec: str,
    student_spec: str,
    output: Path,
    data: str,
    *,
    epochs: int = 10,
    lr: float = 2e-3,
    temperature: float = 4.0,
    alpha: float = 0.7,
    features: tuple[tuple[str, str], ...] = (),
    batch: int = 64,
    seed: int = 0,
    runs: int = 20,
    force: bool = False,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """`distill` with the CLI's flat options (temperature, alpha, features: the DistillConfig;
    epochs, lr, seed: the TrainConfig); see `distill`."""
    job = DistillTraining(
        teacher_spec,
        DistillConfig(temperature, alpha, tuple(features)),
        TrainConfig(epochs=epochs, lr=lr, seed=seed),
        batch,
    )
    return distill(student_spec, output, data, job, runs=runs, force=force, progress=progress)


def distill(
    student_spec: str,
    output: Path,
    data: str,
    job: DistillTraining,
    *,
    runs: int = 20,
    force: bool = False,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """Train a student on a teacher's soft targets (and labels), export it, compare it with the teacher.

    Args:
        student_spec: the student's factory returning (module, {name: example input}); runs that code.
        output: the student's .onnx file. data: as for `prune`.
        job: the teacher, the DistillConfig and the training run (DistillTraining).
        runs, force, progress: as for `prune`.
    """
    from edgeinfer.compress.distill import make_loss
    from edgeinfer.compress.training import accuracy, check_batch, seed_everything, train

    output = Path(output)
    check_output(output, [], force)
    cfg, tcfg = job.distill, job.train
    teacher, inputs, axes = load_model(job.teacher)
    seed_everything(tcfg.seed)  # a student built with random weights differs by seed
    student, s_inputs, s_axes = load_model(student_spec)
    loaders = load_data(data, job.batch, tcfg.seed)
    check_batch(teacher, loaders)
    check_batch(student, loaders)
    example = next(iter(inputs.values()))
    loss_fn, extra, cleanup = make_loss(teacher, student, example, cfg)
    progress.stage("distilling")
    try:
        history = train(
            student,
            loaders,
            tcfg,
            loss_fn,
            extra_params=extra,
            progress=progress,
            checkpoint=checkpoint_path(output),
        )
    finally:
        cleanup()
    metrics = {
        "teacher_accuracy": accuracy(teacher, loaders.eval),
        "student_accuracy": accuracy(student, loaders.eval),
        "teacher_params": sum(p.numel() for p in teacher.parameters()),
        "student_params": sum(p.numel() for p in student.parameters()),
        "history": history.epochs,
    }
    step = Step(
        "distill",
        {
            **cfg.to_dict(),
            "teacher": job.teacher,
            "epochs": tcfg.epochs,
            "lr": tcfg.lr,
            "data": data,
            "seed": tcfg.seed,
            "pass": job.to_dict(),
        },
        metrics,
    )
    return {
        **finish(
            student,
            teacher,
            s_inputs,
            s_axes,
            output,
            student_spec,
            step,
            loaders,
            runs=runs,
            force=force,
            progress=progress,
        ),
        "metrics": metrics,
    }


def qat_model(
    spec: str,
    output: Path,
    data: str,
    *,
    epochs: int = 3,
    lr: float = 1e-4,
    per_channel: bool = True,
    freeze_after: int = 2,
    batch: int = 64,
    seed: int = 0,
    runs: int = 20,
    force: bool = False,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """`qat` with the CLI's flat options (per_channel, freeze_after: the QatConfig; epochs, lr, seed:
    the TrainConfig); see `qat`."""
    job = QatTraining(
        QatConfig(per_channel=per_channel, freeze_after=freeze_after),
        TrainConfig(epochs=epochs, lr=lr, seed=seed),
        batch,
    )
    return qat(spec, output, data, job, runs=runs, force=force, progress=progress)


def qat(
    spec: str,
    output: Path,
    data: str,
    job: QatTraining = QatTraining(),
    *,
    runs: int = 20,
    force: bool = False,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """Quantization-aware training of a factory's model, exported as INT8 QDQ and compared with it in float.

    Args:
        spec, output, data: as for `prune`.
        job: the QatConfig and the training run (QatTraining).
        runs, force, progress: as for `prune`.
    """
    import copy

    from edgeinfer.compress import qat
    from edgeinfer.compress.training import accuracy, check_batch, train

    output = Path(output)
    check_output(output, [], force)
    cfg, tcfg = job.qat, job.train
    module, inputs, axes = load_model(spec)
    loaders = load_data(data, job.batch, tcfg.seed)
    check_batch(module, loaders)
    original = copy.deepcopy(module).eval()
    progress.stage("folding BatchNorm and inserting fake quantization")
    model = qat.prepare(module, cfg)
    qat.calibrate(model, loaders.train)
    acc_start = accuracy(model, loaders.eval)

    def on_epoch(epoch: int, m) -> None:
        if epoch == cfg.freeze_after:
            qat.freeze_observers(m)

    progress.stage("quantization-aware training")
    history = train(
        model,
        loaders,
        tcfg,
        on_epoch=on_epoch,
        progress=progress,
        checkpoint=checkpoint_path(output),
    )
    qat.finalize(model)
    metrics = {
        "float_accuracy": accuracy(original, loaders.eval),
        "fake_quant_accuracy_before_training": acc_start,
        "fake_quant_accuracy_after": accuracy(model, loaders.eval),
        "history": history.epochs,
    }
    config = {
        **cfg.to_dict(),
        "epochs": tcfg.epochs,
        "lr": tcfg.lr,
        "data": data,
        "seed": tcfg.seed,
        "pass": job.to_dict(),
    }
    step = Step("qat", config, metrics)
    # Fake-quant ops export as QuantizeLinear/DequantizeLinear through the TorchScript exporter. ONNX
    # Runtime's integer kernels round differently from PyTorch's float emulation by up to a step.
    return {
        **finish(
            model,
            original,
            inputs,
            axes,
            output,
            spec,
            step,
            loaders,
            runs=runs,
            force=force,
            exporter="torchscript",
            atol=0.5,
            progress=progress,
            postprocess=qat.store_int8_weights,
        ),
        "metrics": metrics,
    }
