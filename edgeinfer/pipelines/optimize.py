"""`edgeinfer optimize`: candidates from the device profile and the model, every one measured on
the user's data against the FP32 baseline (task metric, interleaved latency with a 95% interval,
size), the fastest (or smallest) within the budgets chosen, and written as a deploy bundle.

This is the ONNX path: sources that `export` takes, or an .onnx file. Each candidate is a recipe,
a list of registered passes with their configs, so the chosen one is replayable (`recipe.toml`).
"""

from __future__ import annotations

import logging
import math
import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgeinfer.core.artifact import load_artifact
from edgeinfer.core.errors import ConfigError, option
from edgeinfer.core.io import sha256_file
from edgeinfer.core.progress import QUIET, Progress

log = logging.getLogger(__name__)


class Objective(StrEnum):
    LATENCY = "latency"
    SIZE = "size"


@dataclass(frozen=True)
class Budgets:
    """What the chosen model must meet; None: not checked.

    Args:
        max_drop: the task metric's largest drop against FP32 (accuracy points for classification,
            1 - mean cosine for embeddings and raw outputs).
        max_latency_ms: p50 latency on the eval batch, on this machine.
        max_size_mb: the model file, MiB.
    """

    max_drop: float | None = None
    max_latency_ms: float | None = None
    max_size_mb: float | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"budget {name} = {value} must be a number >= 0")


@dataclass
class Candidate:
    """One recipe and what it measured."""

    name: str
    steps: list[tuple[str, dict[str, Any]]]
    path: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    drop: float | None = None
    p50_ms: float | None = None
    speedup: float | None = None
    speedup_ci95: tuple[float, float] | None = None
    size_bytes: int | None = None
    failed: list[str] = field(default_factory=list)  # the budgets it breaks, or why it could not be built

    @property
    def met(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": [{"pass": p, "config": c} for p, c in self.steps],
            "metrics": self.metrics,
            "drop": self.drop,
            "p50_ms": self.p50_ms,
            "speedup_vs_fp32": self.speedup,
            "speedup_ci95": list(self.speedup_ci95) if self.speedup_ci95 else None,
            "size_bytes": self.size_bytes,
            "met": self.met,
            "failed": self.failed,
        }


@dataclass
class OptimizeReport:
    """All candidates, the chosen one (None when no candidate met the budgets), and the closest."""

    device: str
    objective: str
    budgets: Budgets
    task: str
    candidates: list[Candidate]
    chosen: str | None = None
    closest: str | None = None
    replay: dict[str, Any] | None = None  # with --recipe: identical bytes, recorded and measured drop
    pareto: list[str] = field(default_factory=list)  # not beaten on drop, latency and size at once

    def to_dict(self) -> dict[str, Any]:
        return {
            "pareto": self.pareto,
            "replay": self.replay,
            "device": self.device,
            "objective": self.objective,
            "budgets": {k: v for k, v in asdict(self.budgets).items() if v is not None},
            "task": self.task,
            "chosen": self.chosen,
            "closest": self.closest,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def candidate_recipes(profile, model_type: str | None, has_calib: bool) -> list[tuple[str, list]]:
    """The recipes worth measuring for this device and model: what the profile's precisions allow,
    graph fusions for transformers, static INT8 only with calibration data."""
    from edgeinfer.compress.graph_opt import ORT_MODEL_TYPES

    quant = dict(getattr(profile, "quant", None) or {})
    if quant_recipe(profile) == "qnn":
        # The Hexagon HTP runs QDQ graphs in onnxruntime's QNN configuration and nothing else whole
        # (dynamic INT8 and FP16 would fall back to the CPU): one candidate, with the device's types.
        static = {
            "method": "static",
            "recipe": "qnn",
            "per_channel": bool(quant.get("per_channel", False)),
            "activation_type": quant.get("activation_type", "uint8"),
            "weight_type": quant.get("weight_type", "uint8"),
        }
        return [("int8-static-qnn", [("quantize-onnx", static)])]
    precisions = {p.value for p in profile.precisions} if profile is not None else {"fp32", "int8"}
    transformer = model_type in ORT_MODEL_TYPES
    recipes: list[tuple[str, list]] = []
    if "fp32" in precisions:
        recipes.append(("fp32", []))
    prefixes: list[tuple[str, list]] = [("", [])]
    if transformer:
        graph = ("optimize-graph", {"fusions": "auto"})
        prefixes.append(("graph+", [graph]))
        if "fp32" in precisions:
            recipes.append(("graph", [graph]))
    for prefix, head in prefixes:
        if "int8" in precisions:
            for pc in (True, False):
                tag = "" if pc else "-per-tensor"
                recipes.append(
                    (f"{prefix}int8-dynamic{tag}", [*head, ("quantize-onnx", {"method": "dynamic", "per_channel": pc})])
                )
                if has_calib and not transformer:
                    recipes.append(
                        (
                            f"{prefix}int8-static{tag}",
                            [*head, ("quantize-onnx", {"method": "static", "per_channel": pc})],
                        )
                    )
        if "fp16" in precisions and not prefix:
            recipes.append(("fp16", [("quantize-onnx", {"method": "fp16"})]))
    return recipes


def optimize(
    source: str,
    bundle: Path,
    *,
    data: str,
    profile=None,
    budgets: Budgets = Budgets(),
    objective: Objective = Objective.LATENCY,
    calib: str | None = None,
    runs: int = 20,
    keep_best: bool = False,
    recipe: Path | None = None,
    html: Path | None = None,
    trust_source: bool = False,
    force: bool = False,
    progress: Progress = QUIET,
) -> OptimizeReport:
    """Search the candidates for `profile` within `budgets` and write the chosen one as a bundle.

    Args:
        source: anything `export` takes, or an .onnx file (its sidecar names the task and tokenizer).
        bundle: the folder to write (refused when it exists, unless force).
        data: evaluation data (as for compare: an .npz with labels, a .txt of sentences, ...).
        profile: the device profile (precisions, providers, threads, static shapes).
        budgets, objective: what the chosen model must meet, and what to minimise among those that do.
        calib: calibration data for static INT8 (default: the evaluation data).
        runs: interleaved timing runs; keep_best: write the closest candidate's bundle when none meets.
        recipe: a bundle's recipe.toml to replay instead of searching (refused for another source);
            the result is checked: identical bytes, or a metric drop within REPLAY_TOLERANCE of the recorded.
        html: also write an HTML report: every candidate's row and the metric-against-latency plot.
        trust_source, force, progress: as elsewhere.

    Returns the OptimizeReport; the bundle exists only when a candidate met the budgets (or keep_best).
    """
    from edgeinfer.pipelines.bundle import check_bundle_output, read_recipe, write_bundle
    from edgeinfer.pipelines.compare import EvalTask, compare_models
    from edgeinfer.pipelines.passes import PassContext, run_pass, run_recipe

    bundle = Path(bundle)
    check_bundle_output(bundle, force)
    device = getattr(profile, "name", "this machine")
    replay = read_recipe(recipe, source) if recipe is not None else None
    replay_steps = list(replay[0]) if replay else []
    export_cfg: dict[str, Any] = {}
    if replay_steps and replay_steps[0][0] == "export-onnx":
        export_cfg = dict(replay_steps.pop(0)[1])
    with tempfile.TemporaryDirectory(prefix="edgeinfer-optimize-") as tmp:
        work = Path(tmp)
        ctx = PassContext(
            calib=calib or data, profile=profile, trust_source=trust_source, compare=False, progress=progress
        )
        if Path(source).suffix.lower() == ".onnx":
            baseline = Path(source)
            load_artifact(baseline)  # a hostile or missing file fails here, as everywhere
            export_steps: list[tuple[str, dict[str, Any]]] = []
        else:
            progress.stage(f"exporting {source} (the FP32 baseline)")
            baseline = run_pass("export-onnx", source, work / "fp32.onnx", export_cfg, ctx).path
            export_steps = [("export-onnx", export_cfg)]
        base_art = load_artifact(baseline)
        model_type = base_art.source.get("model_type")
        recipes = [("replay", replay_steps)] if replay else candidate_recipes(profile, model_type, has_calib=True)
        candidates: list[Candidate] = []
        for i, (name, steps) in enumerate(recipes):
            cand = Candidate(name, steps)
            candidates.append(cand)
            if not steps:
                cand.path = baseline
                continue
            progress.stage(f"building candidate {i + 1}/{len(recipes)}: {name}")
            try:
                cand.path = run_recipe(baseline, work / f"{name}.onnx", steps, ctx).path
            except Exception as e:  # a candidate that cannot be built is reported, not fatal
                cand.failed.append(f"could not be built: {str(e).splitlines()[0][:200]}")
        # A pass may keep its input as is (optimize-graph when no fusion is faster here): a file
        # already among the candidates is not measured twice.
        seen: dict[str, str] = {sha256_file(baseline): "fp32"}
        for cand in candidates:
            if cand.path is None or cand.path == baseline:
                continue
            digest = sha256_file(cand.path)
            if digest in seen:
                cand.failed.append(f"the same file as {seen[digest]}")
                cand.path = None
            else:
                seen[digest] = cand.name
        built = [c for c in candidates if c.path is not None and c.path != baseline]
        if quant_recipe(profile) == "qnn" and platform.machine().lower() in ("x86_64", "amd64"):
            log.warning(
                "latency here is the QNN HTP simulator's on this x86 CPU, not a Hexagon NPU's: it ranks "
                "nothing; the candidate is chosen on the metric, and `verify` on the device measures latency"
            )
        progress.stage(f"measuring {len(built) + 1} candidates against FP32, interleaved")
        others = [c.path for c in built if c.path is not None]
        if not others:  # only FP32 itself (a replayed FP32 recipe): compare it with a copy of itself
            copy = work / "fp32-copy.onnx"
            shutil.copyfile(baseline, copy)
            sidecar = baseline.with_name(baseline.name + ".edgeinfer.json")
            if sidecar.exists():
                shutil.copyfile(sidecar, copy.with_name(copy.name + ".edgeinfer.json"))
            others = [copy]
        report = compare_models(
            baseline,
            others,
            data,
            task=EvalTask.AUTO,
            device=profile,
            runs=runs,
            progress=progress,
        )
        pairs = [(c, report.rows[0]) for c in candidates if c.path == baseline] + list(zip(built, report.rows[1:]))
        for cand, row in pairs:
            cand.metrics = dict(row.metrics)
            if row.delta is not None:
                cand.drop = -row.delta + 0.0  # accuracy points; + 0.0: no "-0.0000"
            else:  # 1 - mean cosine, which float rounding can push a hair below 0
                cand.drop = max(1.0 - row.metrics.get("cosine_mean", 1.0), 0.0)
            cand.p50_ms = row.latency_ms["p50"]
            cand.speedup, cand.speedup_ci95 = row.speedup, row.speedup_ci95
            cand.size_bytes = row.file_size_bytes
            cand.failed += _broken(cand, budgets)
        result = OptimizeReport(device, objective.value, budgets, report.task, candidates)
        result.pareto = pareto_front(candidates)
        if replay is not None:
            result.replay = _check_replay(candidates[0], baseline, replay[1])
        met = [c for c in candidates if c.met]
        key = (lambda c: c.p50_ms) if objective is Objective.LATENCY else (lambda c: c.size_bytes)
        if met:
            result.chosen = min(met, key=key).name
        measured = [c for c in candidates if c.p50_ms is not None]
        if not met and measured:
            result.closest = min(measured, key=lambda c: _shortfall(c, budgets)).name
        if html is not None:
            _write_html(report, candidates, result, html)
        pick = result.chosen or (result.closest if keep_best else None)
        if pick is not None:
            chosen = next(c for c in candidates if c.name == pick)
            assert chosen.path is not None
            progress.stage(f"writing the bundle {bundle.name} ({pick})")
            write_bundle(
                bundle,
                chosen.path,
                baseline,
                recipe=export_steps + chosen.steps,
                source=source,
                data=data,
                profile=profile,
                report=result,
                candidate=chosen,
                force=force,
            )
    if result.chosen is None:
        closest = next((c for c in candidates if c.name == result.closest), None)
        hint = f"; closest: {closest.name} ({'; '.join(closest.failed)})" if closest else ""
        log.warning(f"no candidate met the budgets{hint}")
    return result


# How much worse than recorded a replayed model may score when its bytes differ (a pass that is
# not bit-for-bit deterministic, another ONNX Runtime).
REPLAY_TOLERANCE = 0.005


def pareto_front(candidates: list[Candidate]) -> list[str]:
    """The measured candidates no other one beats on metric drop, p50 latency and size at once."""
    measured = [c for c in candidates if c.p50_ms is not None and c.drop is not None and c.size_bytes]

    def beats(a: Candidate, b: Candidate) -> bool:
        pa, pb = (a.drop, a.p50_ms, a.size_bytes), (b.drop, b.p50_ms, b.size_bytes)
        return all(x <= y for x, y in zip(pa, pb)) and pa != pb  # type: ignore[operator]

    return [c.name for c in measured if not any(beats(o, c) for o in measured if o is not c)]


def _write_html(report, candidates: list[Candidate], result: OptimizeReport, path: Path) -> None:
    """compare's HTML report of the measurement, rows named by candidate, the choice on top."""
    import copy

    from edgeinfer.pipelines.compare import write_html

    named = copy.deepcopy(report)
    by_path = {str(c.path): c.name for c in candidates if c.path is not None}
    for row in named.rows:
        row.model = by_path.get(row.model, "fp32") + (" (chosen)" if by_path.get(row.model) == result.chosen else "")
    named.data = (
        f"{report.data}; device {result.device}; chosen {result.chosen}; Pareto front {', '.join(result.pareto)}"
    )
    write_html(named, path)


def quant_recipe(profile) -> str:
    """The quantization recipe a device profile names (generic, or qnn for Hexagon NPUs)."""
    return str((getattr(profile, "quant", None) or {}).get("recipe", "generic"))


def _check_replay(cand: Candidate, baseline: Path, doc: dict[str, Any]) -> dict[str, Any]:
    path = cand.path or baseline
    want = str(doc.get("result", {}).get("sha256") or "")
    recorded_drop = doc.get("measured", {}).get("drop")
    out = {
        "identical_bytes": bool(want) and sha256_file(path) == want,
        "recorded_drop": recorded_drop,
        "drop": cand.drop,
    }
    if not out["identical_bytes"] and recorded_drop is not None and cand.drop is not None:
        if cand.drop > recorded_drop + REPLAY_TOLERANCE:
            cand.failed.append(
                f"does not reproduce: drop {cand.drop:.4f} against the recorded {recorded_drop:.4f} "
                f"(+{REPLAY_TOLERANCE} allowed for differing bytes)"
            )
    return out


def _broken(cand: Candidate, budgets: Budgets) -> list[str]:
    out = []
    if budgets.max_drop is not None and cand.drop is not None and cand.drop > budgets.max_drop + 1e-12:
        out.append(f"{option('max_drop')}: dropped {cand.drop:.4f} > {budgets.max_drop}")
    if budgets.max_latency_ms is not None and cand.p50_ms is not None and cand.p50_ms > budgets.max_latency_ms:
        out.append(f"{option('max_latency_ms')}: p50 {cand.p50_ms:.3f} ms > {budgets.max_latency_ms}")
    if budgets.max_size_mb is not None and cand.size_bytes is not None:
        size = cand.size_bytes / 2**20
        if size > budgets.max_size_mb:
            out.append(f"{option('max_size_mb')}: {size:.2f} MiB > {budgets.max_size_mb}")
    return out


def _shortfall(cand: Candidate, budgets: Budgets) -> float:
    """How far a candidate is from meeting every budget, as the largest relative overshoot."""
    worst = 0.0
    pairs = [
        (cand.drop, budgets.max_drop),
        (cand.p50_ms, budgets.max_latency_ms),
        ((cand.size_bytes or 0) / 2**20, budgets.max_size_mb),
    ]
    for value, limit in pairs:
        if value is not None and limit is not None:
            worst = max(worst, (value - limit) / max(limit, 1e-9))
    return worst if cand.path is not None else math.inf
