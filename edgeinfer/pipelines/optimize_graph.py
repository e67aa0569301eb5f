"""`edgeinfer optimize-graph`: ONNX Runtime's transformer fusions, kept only where they are faster.

The variants (every fusion, every fusion but attention, none) are built, each is checked against
the input graph on two input shapes, and with `fusions = auto` they are timed interleaved on the
target shape; the fastest is written, and the sidecar records the fused operators and the timings.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.compress.graph_opt import Fusions, GraphOptConfig, fuse, ort_model_type
from edgeinfer.core.artifact import Artifact, Step, load_artifact
from edgeinfer.core.errors import InputError, ValidationError
from edgeinfer.core.io import atomic_path, check_output, scratch_dir
from edgeinfer.core.progress import QUIET, Progress

log = logging.getLogger(__name__)

# A fusion may reorder float sums; anything beyond this is a wrong fusion, not rounding.
MIN_COSINE = 0.9999
MAX_ABS = 2e-3


@dataclass
class GraphOptReport:
    """What optimize-graph did.

    Args:
        chosen: the variant written (all, no-attention or none).
        fused: fused operator counts of the written graph.
        timings_ms: p50 per variant on the target shape (auto only).
        speedup: input p50 / written p50 with its bootstrap 95% interval (auto only).
        parity: per variant, the worst max abs diff and cosine against the input graph.
    """

    chosen: str
    fused: dict[str, int] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    speedup: float | None = None
    speedup_ci95: tuple[float, float] | None = None
    shape: dict[str, list[int]] = field(default_factory=dict)  # the inputs the variants were timed on
    parity: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["speedup_ci95"] = list(self.speedup_ci95) if self.speedup_ci95 else None
        return out


def optimize_graph(
    model: Path,
    output: Path,
    config: GraphOptConfig = GraphOptConfig(),
    *,
    profile=None,
    force: bool = False,
    progress: Progress = QUIET,
) -> tuple[Artifact, GraphOptReport]:
    """Fuse a transformer ONNX model's graph where that is faster on this machine.

    Args:
        model: an .onnx exported by edgeinfer (its sidecar names the architecture and its folder).
        output: the .onnx to write; config: the GraphOptConfig.
        profile: a device profile (its threads time the variants); force: overwrite an existing output.
        progress: told each stage and the timing runs.

    Returns the artifact written and the GraphOptReport.
    """
    from edgeinfer.core.hf_folder import read_config

    model, output = Path(model), Path(output)
    if output.suffix.lower() != ".onnx":
        raise InputError(f"optimize-graph writes ONNX: name the output .onnx, not {output.name}")
    check_output(output, [model], force)
    parent = load_artifact(model)
    if any(s.op == "quantize" for s in parent.steps):
        raise InputError(f"{model.name} is quantized; optimize the float graph, then quantize it")
    hf_type = parent.source.get("model_type")
    if hf_type is None:
        raise InputError(
            f"{model.name} records no Hugging Face model type; optimize-graph fuses transformers exported "
            "from a Hugging Face folder"
        )
    model_type = ort_model_type(hf_type)
    heads, hidden = config.num_heads, config.hidden_size
    if not (heads and hidden) and parent.source.get("path"):
        hf = read_config(Path(parent.source["path"]))
        heads = heads or int(hf.get("num_attention_heads", 0))
        hidden = hidden or int(hf.get("hidden_size", 0))
    wanted = [Fusions.NONE, Fusions.NO_ATTENTION, Fusions.ALL] if config.fusions is Fusions.AUTO else [config.fusions]
    report = GraphOptReport(chosen=Fusions.NONE.value)
    with scratch_dir("fuse") as tmp:
        variants: dict[str, Path] = {}
        fused: dict[str, dict[str, int]] = {}
        for v in wanted:
            if v is Fusions.NONE:
                variants[v.value], fused[v.value] = model, {}
                continue
            progress.stage(f"fusing ({v.value}) for {model_type} with {heads} heads, hidden size {hidden}")
            path = Path(tmp) / f"{v.value}.onnx"
            fused[v.value] = fuse(model, path, model_type, heads, hidden, attention=v is Fusions.ALL)
            variants[v.value] = path
        progress.stage("checking every variant against the input graph on two shapes")
        report.parity = _check_parity(model, variants, config)
        if len(variants) > 1:
            progress.stage(f"timing {', '.join(variants)}, interleaved")
            report.chosen, report.timings_ms, report.speedup, report.speedup_ci95, report.shape = _fastest(
                variants, config, profile, progress
            )
        else:
            report.chosen = wanted[0].value
        report.fused = fused[report.chosen]
        with atomic_path(output, overwrite=force) as out:
            shutil.copyfile(variants[report.chosen], out)
    step = Step("optimize-graph", {**config.to_dict(), "applied": report.chosen, "ort_model_type": model_type},
                report.to_dict())  # fmt: skip
    art = parent.derive(output, step)
    art.save()
    if report.chosen == Fusions.NONE.value and config.fusions is Fusions.AUTO:
        shape = ", ".join(f"{k}{v}" for k, v in report.shape.items())
        log.info(
            f"no fusion was faster on {shape} on this machine; {output.name} is the input graph "
            "(ONNX Runtime still fuses at load)"
        )
    return art, report


def _feeds(runner, batch: int, sequence: int, seed: int) -> dict[str, np.ndarray]:
    from edgeinfer.pipelines.bench import synthetic_inputs

    return synthetic_inputs(runner.inputs, {"batch": [batch], "sequence": [sequence]}, seed=seed)


def _check_parity(model: Path, variants: dict[str, Path], config: GraphOptConfig) -> dict[str, dict[str, float]]:
    from edgeinfer.exporters.validate import compare_arrays
    from edgeinfer.pipelines.target import onnx_runner

    base = onnx_runner(model, profile_first_run=False)
    shapes = [(config.batch, config.sequence), (config.batch + 1, max(config.sequence // 2, 1))]
    cases = [_feeds(base, b, s, seed=i) for i, (b, s) in enumerate(shapes)]
    refs = [base.run(f) for f in cases]
    parity = {}
    for name, path in variants.items():
        if path == model:
            continue
        runner = onnx_runner(path, profile_first_run=False)
        worst_abs, worst_cos, scale, problems = 0.0, 1.0, 1.0, []
        for feeds, ref in zip(cases, refs):
            got = runner.run(feeds)
            for out, r in ref.items():
                figs = compare_arrays(r, got[out])
                worst_abs, worst_cos = max(worst_abs, figs["max_abs_diff"]), min(worst_cos, figs["cosine"])
                scale = max(scale, figs["ref_max_abs"])
        if worst_cos < MIN_COSINE or worst_abs > MAX_ABS * scale:
            problems.append(f"{name}: max abs diff {worst_abs:.3g}, cosine {worst_cos:.6f}")
        if problems:
            raise ValidationError(f"the fused graph of {model.name} does not match the input graph", problems)
        parity[name] = {"max_abs_diff": worst_abs, "min_cosine": worst_cos}
    return parity


def _fastest(variants: dict[str, Path], config: GraphOptConfig, profile, progress: Progress):
    from edgeinfer.core.measure import interleaved, speedup_ci
    from edgeinfer.pipelines.target import onnx_runner, onnx_target

    target = onnx_target(profile)
    runners = {name: onnx_runner(path, target, profile_first_run=False) for name, path in variants.items()}
    feeds = _feeds(next(iter(runners.values())), config.batch, config.sequence, seed=0)
    times = interleaved(
        {name: (lambda r=r: r.session.run(None, feeds)) for name, r in runners.items()},
        runs=config.runs,
        warmup=3,
        progress=progress,
    )
    p50 = {name: float(np.median(t) * 1e3) for name, t in times.items()}
    first = next(iter(variants))  # "none": the input graph
    # A fusion is kept only when its whole 95% interval says faster than the input graph.
    best, best_ci = first, (1.0, 1.0, 1.0)
    for name in variants:
        if name == first:
            continue
        point, lo, hi = speedup_ci(times[first], times[name])
        if lo > 1.0 and point > best_ci[0]:
            best, best_ci = name, (point, lo, hi)
    shapes = {name: list(value.shape) for name, value in feeds.items()}
    return best, p50, best_ci[0], (best_ci[1], best_ci[2]), shapes
