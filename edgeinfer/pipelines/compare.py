"""`edgeinfer compare` / `check`: baseline and candidates on the same data, accuracy and latency side by side.

Latency is measured interleaved across all models; the task metric is computed on every batch.
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.data import Batches
from edgeinfer.core.errors import ConfigError, InputError
from edgeinfer.core.measure import interleaved, percentiles, speedup_ci
from edgeinfer.core.progress import QUIET, Progress
from edgeinfer.pipelines import head_metrics
from edgeinfer.pipelines.llm_eval import LlmComparisonReport
from edgeinfer.pipelines.target import OnnxTarget

REPORT_SCHEMA = 1


class EvalTask(StrEnum):
    AUTO = "auto"
    CLASSIFICATION = "classification"
    EMBEDDING = "embedding"
    RAW = "raw"
    # Task heads scored against the baseline's decisions (pipelines/head_metrics.py):
    TOKENS = "tokens"  # token classification: the label of every real token
    FILL_MASK = "fill-mask"  # masked LM: the top word at every real token
    SPAN = "span"  # extractive QA: the answer span
    DETECTION = "detection"  # object detection: class and box per query
    SEGMENTATION = "segmentation"  # semantic segmentation: the class of every pixel
    TRANSCRIPTION = "transcription"  # CTC speech recognition: the greedy transcript


# The metric each export task's head is scored by when --task is auto.
HEAD_TASKS = {
    "feature-extraction": EvalTask.EMBEDDING,
    "token-classification": EvalTask.TOKENS,
    "fill-mask": EvalTask.FILL_MASK,
    "question-answering": EvalTask.SPAN,
    "object-detection": EvalTask.DETECTION,
    "semantic-segmentation": EvalTask.SEGMENTATION,
    "ctc": EvalTask.TRANSCRIPTION,
}
# The outputs each head metric reads, by the export's output names.
HEAD_OUTPUTS = {
    EvalTask.SPAN: ("start_logits", "end_logits"),
    EvalTask.DETECTION: ("logits", "pred_boxes"),
}


@dataclass
class CompareRow:
    """One model of a comparison: its size, its latency against the baseline's, its task metric and
    where it ran.

    Args:
        model: the model's path.
        latency_ms: p50 / p90 / p99 / mean of the interleaved runs.
        speedup, speedup_ci95: baseline p50 / this p50, with its bootstrap 95% interval.
        metrics: the task metric(s) against the labels or the baseline's outputs.
        delta: classification only, accuracy minus the baseline's.
    """

    model: str
    file_size_bytes: int
    latency_ms: dict[str, float]
    speedup: float
    speedup_ci95: tuple[float, float]
    metrics: dict[str, float]
    providers: list[str]
    placement: dict[str, Any] = field(default_factory=dict)
    fallbacks: list[Any] = field(default_factory=list)
    delta: float | None = None

    @property
    def name(self) -> str:
        return Path(self.model).name

    @property
    def simulated(self) -> bool:
        """Timed on an NPU simulator (QNN's HTP on an x86 CPU): its latency says nothing of the device."""
        import platform

        return "QNNExecutionProvider" in self.providers and platform.machine().lower() in ("x86_64", "amd64")

    @property
    def slower(self) -> bool:
        """Slower than the baseline: the whole 95% interval of the speedup lies below 1 (never for a
        model timed on a simulator, whose latency is not the device's)."""
        return self.speedup_ci95[1] < 1.0 and not self.simulated

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["speedup_ci95"] = list(self.speedup_ci95)
        if self.delta is None:
            del out["delta"]
        return out


@dataclass
class ComparisonReport:
    """`compare` / `check` on ONNX models: one row a model, the baseline first. `to_dict()` is the
    `--json` output (schema 1)."""

    task: str
    data: str
    samples: int
    batch_shape: dict[str, list[int]]
    runs: int
    baseline: str
    rows: list[CompareRow]
    schema: int = REPORT_SCHEMA

    @property
    def candidates(self) -> list[CompareRow]:
        return self.rows[1:]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "task": self.task,
            "data": self.data,
            "samples": self.samples,
            "batch_shape": self.batch_shape,
            "runs": self.runs,
            "baseline": self.baseline,
            "rows": [r.to_dict() for r in self.rows],
        }


@dataclass(frozen=True)
class Budget:
    """What `check` allows a candidate to lose. None: not checked."""

    max_drop: float | None = None  # accuracy points (0.01 = 1 point) for classification
    min_cosine: float | None = None  # mean embedding / output cosine to the baseline
    min_agreement: float | None = None  # share of decisions (classes, tokens, spans, ...) the baseline agrees with
    max_slowdown: float | None = None  # candidate p50 / baseline p50
    min_speedup: float | None = None  # baseline p50 / candidate p50
    max_size_mb: float | None = None  # candidate file size in MiB
    max_kld: float | None = None  # LLMs: mean KL divergence from the baseline's token distribution
    min_top1: float | None = None  # LLMs: share of positions whose most likely token agrees

    def __post_init__(self) -> None:
        ranges = {
            "max_drop": (0.0, 1.0),
            "min_cosine": (-1.0, 1.0),
            "min_agreement": (0.0, 1.0),
            "max_slowdown": (1e-6, 1e6),
            "min_speedup": (1e-6, 1e6),
            "max_size_mb": (1e-9, 1e9),
            "max_kld": (0.0, 1e3),
            "min_top1": (0.0, 1.0),
        }
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and lo <= value <= hi):
                raise ConfigError(f"budget {name} = {value} is impossible; it must be a number in [{lo:g}, {hi:g}]")

    def to_dict(self) -> dict[str, float]:
        """The budgets that are set (what `check --json` records)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def resolve_task(task: EvalTask, data: Batches, baseline_meta: dict) -> EvalTask:
    """The metric compare scores by: the one asked for, else the one the export's head means
    (embeddings for feature-extraction: hidden states have no classes, whatever labels the data
    carries; token labels, answer spans, detections, segmentation maps, transcripts), else
    classification when the data has labels, else raw-output agreement."""
    exported = baseline_meta.get("task")
    head = HEAD_TASKS.get(str(exported))
    if task is not EvalTask.AUTO:
        if task is EvalTask.CLASSIFICATION and head is not None:
            raise InputError(
                f"the baseline is a {exported} export ({'hidden states, ' if head is EvalTask.EMBEDDING else ''}"
                f"no class logits per sample): score it with --task {head.value}"
                + (", or export the checkpoint's classification head" if head is EvalTask.EMBEDDING else "")
            )
        if task in _HEAD_METRICS and head is not task:
            raise InputError(
                f"--task {task.value} scores a {_exports_of(task)} export; the baseline is "
                f"{f'an export of {exported}' if exported is not None else 'not a Hugging Face export'}: use --task auto"
            )
        if task is EvalTask.CLASSIFICATION and data.labels is None:
            raise InputError("classification needs labels: add a `labels` array to the .npz")
        return task
    if head is not None:
        return head
    if data.labels is not None:
        return EvalTask.CLASSIFICATION
    return EvalTask.RAW


def _exports_of(task: EvalTask) -> str:
    return " or ".join(name for name, t in HEAD_TASKS.items() if t is task)


def scored_outputs(task: EvalTask, names: list[str]) -> list[int]:
    """Which of a graph's outputs (by position) `task` scores: the head's named outputs, else the first."""
    wanted = HEAD_OUTPUTS.get(task)
    if wanted is None:
        return [0]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise InputError(f"{task.value} scoring reads outputs {', '.join(wanted)}; the model gives {', '.join(names)}")
    return [names.index(w) for w in wanted]


def _outputs(runner, data: Batches, task: EvalTask) -> list[list[np.ndarray]]:
    """Per batch, the outputs `task` scores (scored_outputs), as float32."""
    names = [runner.output_names[i] for i in scored_outputs(task, list(runner.output_names))]
    outs = []
    for b in data.batches:
        result = runner.run(b, check=True)
        outs.append([result[n].astype(np.float32) for n in names])
    return outs


def _per_sample(task: EvalTask, outs: list[list[np.ndarray]], data: Batches) -> Any:
    """Batch outputs as one row per sample: pooled embeddings, logits, or flattened raw outputs;
    a head's outputs stay by batch (head_metrics reads them with the batches' masks).

    Text batches pad to different lengths, so token-level outputs are pooled (or flattened)
    batch by batch before they are joined.
    """
    if task in _HEAD_METRICS:
        return outs
    first = [o[0] for o in outs]
    if task is EvalTask.EMBEDDING:
        return np.concatenate([_pool(o, data, i) for i, o in enumerate(first)])
    if task is EvalTask.CLASSIFICATION:
        return np.concatenate([o.reshape(o.shape[0], -1) for o in first])
    return [row.ravel() for o in first for row in o]


def _pool(hidden: np.ndarray, data: Batches, index: int) -> np.ndarray:
    """Mean-pool token embeddings over the attention mask; 2-D outputs are already pooled; a
    convolutional feature map [batch, channels, height, width] is averaged over its spatial axes;
    audio frames (a mask over samples, not frames) are averaged whole."""
    if hidden.ndim == 2:
        return hidden
    if hidden.ndim > 3:
        return hidden.reshape(hidden.shape[0], hidden.shape[1], -1).mean(-1)
    batch = data.batches[index]
    if data.attention_masks:
        mask = data.attention_masks[index]
    else:
        mask = batch.get("attention_mask", np.ones(hidden.shape[:2]))
    if mask.shape != hidden.shape[:2]:  # audio frames: the mask counts samples, not frames; pool them all
        return hidden.mean(1)
    m = mask[..., None].astype(np.float32)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def _cosines(a, b) -> np.ndarray:
    """Cosine per row; two identical rows are 1.0 even when they are all zeros (a model compared
    with itself agrees), a zero row against another row 0.0."""
    out = []
    for x, y in zip(a, b):
        denom = float(np.linalg.norm(x) * np.linalg.norm(y))
        out.append(float(x @ y) / denom if denom > 0 else float(np.array_equal(x, y)))
    return np.array(out)


def retrieval_agreement(base: np.ndarray, cand: np.ndarray, k: int = 10) -> float:
    """Share of each item's k nearest neighbours (cosine, self excluded) that both models agree on."""
    k = min(k, len(base) - 1)
    if k < 1:
        return 1.0

    def neighbours(e):
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        sim = e @ e.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1)[:, :k]

    nb, nc = neighbours(base), neighbours(cand)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(nb, nc)]))


def _transcripts(base, out, data: Batches, head: dict) -> dict[str, float]:
    delimiter = head.get("word_delimiter")
    vocab = base[0][0].shape[-1] if base else 0
    ok = isinstance(delimiter, int) and not isinstance(delimiter, bool) and 0 <= delimiter < vocab
    blank = head.get("blank", 0)
    if not (isinstance(blank, int) and not isinstance(blank, bool) and 0 <= blank < max(vocab, 1)):
        blank = 0
    return head_metrics.transcription_metrics(base, out, data, delimiter if ok else None, blank)


_HEAD_METRICS = {
    EvalTask.TOKENS: lambda base, out, data, head: head_metrics.token_metrics(base, out, data),
    EvalTask.FILL_MASK: lambda base, out, data, head: head_metrics.fill_mask_metrics(base, out, data),
    EvalTask.SPAN: lambda base, out, data, head: head_metrics.span_metrics(base, out, data),
    EvalTask.DETECTION: lambda base, out, data, head: head_metrics.detection_metrics(base, out, data),
    EvalTask.SEGMENTATION: lambda base, out, data, head: head_metrics.segmentation_metrics(base, out, data),
    EvalTask.TRANSCRIPTION: _transcripts,
}


def metrics(task: EvalTask, base, out, data: Batches, head: dict | None = None) -> dict[str, float]:
    """Task metric of `out` (per-sample rows from _per_sample) against labels and the baseline's rows;
    `head`: the export's head settings (the sidecar's meta["head"]: a CTC vocabulary's ids)."""
    if task in _HEAD_METRICS:
        return _HEAD_METRICS[task](base, out, data, head if isinstance(head, dict) else {})
    if task is EvalTask.CLASSIFICATION:
        labels, classes = np.asarray(data.labels), out.shape[-1]
        wrong = ~np.isin(labels, np.arange(classes))  # NaN, 2.5, -1 or 10 for a 10-class model
        if wrong.any():
            raise InputError(
                f"the data's labels must be class indices 0 ... {classes - 1} (the model has {classes} classes); "
                f"found {labels[wrong].ravel()[0]!r}"
            )
        return {
            "accuracy": float((out.argmax(-1) == data.labels).mean()),
            "agreement_with_baseline": float((out.argmax(-1) == base.argmax(-1)).mean()),
        }
    cos = _cosines(base, out)
    if task is EvalTask.EMBEDDING:
        return {
            "cosine_mean": float(cos.mean()),
            "cosine_min": float(cos.min()),
            "retrieval_top10": retrieval_agreement(base, out),
        }
    return {
        "max_abs_diff": max(float(np.abs(x - y).max()) for x, y in zip(base, out)),
        "cosine_mean": float(cos.mean()),
    }


def metric_drop(metrics: dict[str, float], delta: float | None) -> float:
    """What a candidate lost, as one number: accuracy points when scored on labels, else 1 - the
    mean cosine to the baseline's outputs, else 1 - its agreement with the baseline's decisions
    (a head's tokens, spans, boxes, pixels, transcripts); float rounding never makes it negative."""
    if delta is not None:
        return -delta + 0.0  # + 0.0: no "-0.0000"
    if "cosine_mean" in metrics:
        return max(1.0 - metrics["cosine_mean"], 0.0)
    return max(1.0 - metrics.get("agreement_with_baseline", 1.0), 0.0)


def score(
    task: EvalTask,
    base_outs: list[list[np.ndarray]],
    cand_outs: list[list[np.ndarray]],
    data: Batches,
    head: dict | None = None,
):
    """The candidate's task metrics from both models' scored outputs (scored_outputs) on every batch
    of `data` (as compare_models computes them, wherever the outputs were produced), and its
    accuracy change against the baseline (None unless classification)."""
    base, cand = _per_sample(task, base_outs, data), _per_sample(task, cand_outs, data)
    m = metrics(task, base, cand, data, head)
    if task is not EvalTask.CLASSIFICATION:
        return m, None
    return m, m["accuracy"] - metrics(task, base, base, data)["accuracy"]


def compare_models(
    baseline: Path,
    candidates: list[Path],
    data_spec: str,
    *,
    task: EvalTask = EvalTask.AUTO,
    device=None,
    providers=None,
    baseline_device=None,
    allow_fallback: bool = False,
    runs: int = 30,
    batch_size: int = 8,
    limit: int | None = None,
    data: Batches | None = None,
    progress: Progress = QUIET,
    where: OnnxTarget | None = None,
) -> ComparisonReport:
    """Run a baseline and candidates on the same data: size, interleaved latency with a bootstrap 95% CI,
    and the task metric (accuracy, embedding cosine and retrieval, or raw-output agreement).

    Args:
        baseline, candidates: .onnx models; the baseline runs on `baseline_device` (default: the CPU),
            the candidates on `device` / `providers`.
        data_spec: the data (an .npz with `labels` for classification, a folder, a .txt, a factory).
        task: auto, classification, embedding or raw.
        runs, batch_size, limit: timing runs, batch size, at most this many samples.
        data: already loaded Batches (skips data_spec).
        where: the candidates' runtime in full (OpenVINO, its device and precision), instead of
            `device` / `providers`.

    Returns the ComparisonReport (one row a model, the baseline first).
    """
    from edgeinfer.core.measure import apply_measurement_env

    apply_measurement_env()  # before torch or llama.cpp loads: OpenMP reads it once
    from edgeinfer.core.artifact import load_artifact
    from edgeinfer.core.data import load_batches
    from edgeinfer.pipelines.target import onnx_runner, onnx_target

    if not candidates:
        raise ConfigError("give at least one candidate model after the baseline")
    base_art = load_artifact(baseline)
    base_target, target = onnx_target(baseline_device), where or onnx_target(device, providers)
    runners = {str(baseline): onnx_runner(baseline, base_target)}
    for cand in candidates:
        runners[str(cand)] = onnx_runner(cand, target, allow_fallback=allow_fallback)
    base_runner = runners[str(baseline)]
    if data is None:
        data = load_batches(data_spec, base_runner.inputs, batch_size, base_art.meta.get("tokenizer"), limit)
    task = resolve_task(task, data, base_art.meta)
    outputs = {name: _per_sample(task, _outputs(r, data, task), data) for name, r in runners.items()}
    head = base_art.meta.get("head")
    feeds = data.batches[0]
    times = interleaved(
        {name: r.timer(feeds) for name, r in runners.items()},
        runs=runs,
        warmup=3,
        progress=progress,
    )
    base_out = outputs[str(baseline)]
    base_metrics = metrics(task, base_out, base_out, data, head)
    rows = []
    for name, runner in runners.items():
        m = metrics(task, base_out, outputs[name], data, head)
        point, lo, hi = speedup_ci(times[str(baseline)], times[name])
        rows.append(
            CompareRow(
                model=name,
                file_size_bytes=Path(name).stat().st_size,
                latency_ms=percentiles(times[name]),
                speedup=point,
                speedup_ci95=(lo, hi),
                metrics=m,
                providers=runner.report.used,
                placement=runner.report.placement,
                fallbacks=runner.report.fallbacks,
                delta=m["accuracy"] - base_metrics["accuracy"] if task is EvalTask.CLASSIFICATION else None,
            )
        )
    return ComparisonReport(
        task=task.value,
        data=data_spec,
        samples=data.samples,
        batch_shape={k: list(v.shape) for k, v in feeds.items()},
        runs=runs,
        baseline=str(baseline),
        rows=rows,
    )


def check_budget(report: ComparisonReport | LlmComparisonReport, budget: Budget) -> list[str]:
    """Every way a candidate breaks the budget, as sentences; empty when all pass.

    Latency is noisy, so a latency budget is only broken when the whole 95% interval of the
    speedup lies on the wrong side of it, not when the point estimate does.
    """
    llm = isinstance(report, LlmComparisonReport)  # a GGUF quality report, scored on token windows
    wrong = (
        [
            f
            for f in ("max_drop", "min_cosine", "min_agreement", "max_slowdown", "min_speedup")
            if getattr(budget, f) is not None
        ]
        if llm
        else [f for f in ("max_kld", "min_top1") if getattr(budget, f) is not None]
    )
    if wrong:
        raise ConfigError(
            f"{', '.join(wrong)} do not apply to {'GGUF LLMs' if llm else 'ONNX models'}; "
            + ("use max_kld, min_top1 or max_size_mb" if llm else "max_kld and min_top1 are for GGUF LLMs")
        )
    problems = []
    if isinstance(report, LlmComparisonReport):
        for row in report.candidates:
            # Written as "not within", so a NaN figure (a model that outputs NaN) fails instead of passing.
            if budget.max_kld is not None and row.kl_mean is not None and not row.kl_mean <= budget.max_kld:
                problems.append(f"{row.name}: mean KL divergence {row.kl_mean:.4f} above {budget.max_kld}")
            if (
                budget.min_top1 is not None
                and row.top1_agreement is not None
                and not row.top1_agreement >= budget.min_top1
            ):
                problems.append(f"{row.name}: top-1 agreement {row.top1_agreement:.3f} below {budget.min_top1}")
            problems += _size_problems(row.name, row.file_size_bytes, budget)
        return problems
    rows = report.candidates
    if budget.max_drop is not None and not any(r.delta is not None for r in rows):
        raise ConfigError(
            f"max_drop (accuracy) needs classification data with labels; this comparison is {report.task}: "
            "use min_cosine"
        )
    if budget.min_cosine is not None and not any("cosine_mean" in r.metrics for r in rows):
        raise ConfigError(
            f"min_cosine needs embedding or raw outputs; this comparison is {report.task}: use "
            + ("min_agreement" if any("agreement_with_baseline" in r.metrics for r in rows) else "max_drop")
        )
    if budget.min_agreement is not None and not any("agreement_with_baseline" in r.metrics for r in rows):
        raise ConfigError(
            f"min_agreement needs decisions to compare (classes, token labels, spans, boxes, pixels, transcripts); "
            f"this comparison is {report.task}: use min_cosine"
        )
    for row in rows:
        name, m = row.name, row.metrics
        lo, hi = row.speedup_ci95
        # "not within" rather than "beyond": NaN accuracy or cosine (NaN outputs, NaN data) fails.
        if budget.max_drop is not None and row.delta is not None and not -row.delta <= budget.max_drop + 1e-12:
            problems.append(f"{name}: accuracy dropped {-row.delta:.4f} (budget {budget.max_drop:.4f})")
        if budget.min_cosine is not None and "cosine_mean" in m and not m["cosine_mean"] >= budget.min_cosine:
            problems.append(f"{name}: mean cosine {m['cosine_mean']:.4f} below {budget.min_cosine:.4f}")
        agree = m.get("agreement_with_baseline")
        if budget.min_agreement is not None and agree is not None and not agree >= budget.min_agreement:
            problems.append(
                f"{name}: agrees with the baseline on {agree:.4f} of its decisions, below {budget.min_agreement:.4f}"
            )
        if budget.max_slowdown is not None and 1.0 / hi > budget.max_slowdown:
            problems.append(
                f"{name}: {1.0 / row.speedup:.2f}x the baseline's latency, at best {1.0 / hi:.2f}x "
                f"(95% CI), budget {budget.max_slowdown:.2f}x"
            )
        if budget.min_speedup is not None and hi < budget.min_speedup:
            problems.append(
                f"{name}: speedup {row.speedup:.2f}x (95% CI {lo:.2f}-{hi:.2f}) below {budget.min_speedup:.2f}x"
            )
        problems += _size_problems(name, row.file_size_bytes, budget)
    return problems


def _size_problems(name: str, size_bytes: int, budget: Budget) -> list[str]:
    size_mb = size_bytes / 2**20
    if budget.max_size_mb is not None and size_mb > budget.max_size_mb:
        return [f"{name}: {size_mb:.2f} MiB, above {budget.max_size_mb:.2f} MiB"]
    return []


def write_html(
    report: ComparisonReport,
    path: Path,
    *,
    title: str = "edgeinfer compare",
    summary: str | None = None,
    pareto: tuple[str, ...] = (),
) -> None:
    """The report as one HTML page: a numbered table and the metric-against-latency plot, where
    each model is its number (names overlap where models sit close), the Pareto front outlined."""
    from edgeinfer.core.io import write_text_atomic

    esc = html.escape
    keys = sorted({k for r in report.rows for k in r.metrics})
    head = "".join(f"<th>{h}</th>" for h in ["#", "model", "size MiB", "p50 ms", "speedup (95% CI)", *keys])
    body = ""
    for i, r in enumerate(report.rows):
        lo, hi = r.speedup_ci95
        speed = "1.00x (baseline)" if i == 0 else f"{r.speedup:.2f}x" + (f" ({lo:.2f}-{hi:.2f})" if lo < hi else "")
        if i and r.slower:
            speed += ' <b style="color:#c00">SLOWER</b>'
        cells = [
            str(i + 1),
            esc(r.name) + (" <i>(Pareto front)</i>" if r.name in pareto else ""),
            f"{r.file_size_bytes / 2**20:.2f}",
            f"{r.latency_ms['p50']:.3f}",
            speed,
        ] + [f"{r.metrics.get(k, float('nan')):.4f}" for k in keys]
        body += "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"
    if summary is None:
        summary = (
            f"task {report.task}, data {report.data} ({report.samples} samples), {report.runs} interleaved runs "
            f"on batch {report.batch_shape}"
        )
    write_text_atomic(
        path,
        f"""<!doctype html><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}}
td:nth-child(2),th:nth-child(2){{text-align:left}}</style>
<h1>{esc(title)}</h1><p>{esc(summary)}</p>
<table><tr>{head}</tr>
{body}</table>
{_svg_plot(report, pareto)}
""",
    )


def _free_spot(x: float, y: float, placed: list[tuple[float, float]]) -> tuple[float, float]:
    """Where a marker's number goes: on the marker, or the nearest nearby spot no number holds yet
    (models that measured alike sit on top of each other), recorded in `placed`."""
    w, h = 22.0, 15.0  # a label of up to two digits, with a margin
    for dx, dy in [(0, 0), (0, -h), (0, h), (w, 0), (-w, 0), (w, -h), (-w, -h), (w, h), (-w, h),
                   (0, -2 * h), (0, 2 * h), (2 * w, 0), (-2 * w, 0)]:  # fmt: skip
        spot = (x + dx, y + dy)
        if all(abs(spot[0] - px) >= w or abs(spot[1] - py) >= h for px, py in placed):
            placed.append(spot)
            return spot
    placed.append((x, y))
    return x, y


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi]."""
    span = hi - lo or abs(hi) or 1.0
    step = 10 ** math.floor(math.log10(span / n))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= n)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _svg_plot(report: ComparisonReport, pareto: tuple[str, ...] = ()) -> str:
    """Task metric against p50 latency, one numbered marker per model (area: file size), the
    latency's 95% interval as a bar where one was measured, ticks on both axes, SLOWER where the
    whole interval is slower than the baseline, and the Pareto front outlined and joined."""
    metric = next((k for k in ("accuracy", "cosine_mean", "top1_agreement") if k in report.rows[0].metrics), None)
    if metric is None:
        return ""
    w, h, pad = 640, 360, 60
    rows = report.rows
    base_p50 = rows[0].latency_ms["p50"]
    xs = [r.latency_ms["p50"] for r in rows]
    # The latency interval from the speedup's: the baseline's p50 over the speedup's bounds.
    cis = [
        (base_p50 / r.speedup_ci95[1], base_p50 / r.speedup_ci95[0]) if i else (x, x)
        for i, (r, x) in enumerate(zip(rows, xs))
    ]
    ys = [r.metrics[metric] for r in rows]
    sizes = [r.file_size_bytes for r in rows]
    x0, x1 = 0.0, max(max(hi for _, hi in cis), max(xs)) * 1.15
    y0, y1 = min(ys) - 0.01, max(ys) + 0.01

    def px(x, y):
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad), h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    parts = [
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
    ]
    for t in _ticks(x0, x1):
        tx, _ = px(t, y0)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{h - pad}" x2="{tx:.1f}" y2="{h - pad + 5}" stroke="black"/>'
            f'<text x="{tx:.1f}" y="{h - pad + 18}" font-size="11" text-anchor="middle">{t:g}</text>'
        )
    for t in _ticks(y0, y1):
        _, ty = px(x0, t)
        parts.append(
            f'<line x1="{pad - 5}" y1="{ty:.1f}" x2="{pad}" y2="{ty:.1f}" stroke="black"/>'
            f'<text x="{pad - 8}" y="{ty + 4:.1f}" font-size="11" text-anchor="end">{t:.3g}</text>'
        )
    front = sorted((x, y) for r, x, y in zip(rows, xs, ys) if r.name in pareto)
    if len(front) > 1:
        points = " ".join(f"{px(x, y)[0]:.1f},{px(x, y)[1]:.1f}" for x, y in front)
        parts.append(f'<polyline points="{points}" fill="none" stroke="#222" stroke-dasharray="5,4"/>')
    placed: list[tuple[float, float]] = []
    for i, (r, x, y, size, (lo, hi)) in enumerate(zip(rows, xs, ys, sizes, cis)):
        cx, cy = px(x, y)
        lx, ly = _free_spot(cx, cy, placed)
        (ax, _), (bx, _) = px(lo, y), px(hi, y)
        radius = 4 + 22 * (size / max(sizes)) ** 0.5  # area proportional to size
        slower = i > 0 and r.slower
        color, text_color = ("#d83b3b", "#c00") if slower else ("#3b7dd8", "#000")
        outline = ' stroke="#000" stroke-width="2.5"' if r.name in pareto else ""
        if hi > lo:  # a measured interval; none for a model timed without one
            parts.append(
                f'<line x1="{ax:.1f}" y1="{cy:.1f}" x2="{bx:.1f}" y2="{cy:.1f}" stroke="#333" stroke-width="2"/>'
            )
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" fill="{color}" fill-opacity="0.4"{outline}>'
            f"<title>{html.escape(r.name)}</title></circle>"
            + (
                f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{lx:.1f}" y2="{ly:.1f}" stroke="#999"/>'
                if (lx, ly) != (cx, cy)
                else ""
            )
            + f'<text class="label" x="{lx:.1f}" y="{ly + 4:.1f}" font-size="12" font-weight="bold" '
            f'text-anchor="middle" fill="{text_color}">{i + 1}</text>'
        )
    return (
        f"<h2>{metric} against p50 latency</h2><p>Each marker is the model of that number in the table; "
        "its area is the file size, its bar the 95% interval of the latency where one was measured"
        + (
            "; outlined and joined: the Pareto front (no other model is better on metric, latency and size at once)"
            if pareto
            else ""
        )
        + ".</p>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">{"".join(parts)}'
        f'<text x="{w / 2}" y="{h - 15}" font-size="12" text-anchor="middle">p50 latency, ms</text>'
        f'<text x="14" y="{h / 2}" font-size="12" transform="rotate(-90 14 {h / 2})" text-anchor="middle">'
        f"{metric}</text></svg>"
    )
