"""The search that `optimize` runs for both kinds of model: budgets, candidates and what they
measured, the loop that measures them (skipping what cannot win, reading and filling the
measurement cache), the choice, the Pareto front, and the report.

A kind of model plugs in a SearchSpace (optimize_onnx.OnnxSpace, optimize_llm.GgufSpace) that
builds a candidate's recipe and measures the result against the baseline.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgeinfer.core.errors import ConfigError, option
from edgeinfer.core.io import sha256_file
from edgeinfer.core.progress import QUIET, Progress
from edgeinfer.core.schema import Record
from edgeinfer.pipelines.optimize.measurements import CachedFigures

if TYPE_CHECKING:
    from edgeinfer.devices import DeviceProfile

log = logging.getLogger(__name__)


class Objective(StrEnum):
    LATENCY = "latency"
    SIZE = "size"


@dataclass(frozen=True)
class Budgets(Record):
    """What the chosen model must meet; None: not checked.

    Args:
        max_drop: ONNX: the task metric's largest drop against FP32 (accuracy points for
            classification, 1 - mean cosine for embeddings and raw outputs).
        max_kld: LLMs: the largest mean KL divergence from the baseline's next-token distribution.
        min_top1: LLMs: the smallest share of positions whose most likely token agrees with the baseline's.
        max_latency_ms: p50 latency on the eval batch (LLMs: per generated token), on this machine.
        max_size_mb: the model file, MiB.
        max_memory_mb: peak resident memory of a process running the model, MiB.
    """

    max_drop: float | None = None
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    max_memory_mb: float | None = None
    max_kld: float | None = None
    min_top1: float | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"budget {option(name)} = {value} must be a number >= 0")
        if self.min_top1 is not None and self.min_top1 > 1:
            raise ConfigError(f"budget {option('min_top1')} = {self.min_top1} is a share: at most 1")

    def for_kind(self, kind: str) -> None:
        """Refuse budgets that mean nothing for this kind of model."""
        wrong = ("max_kld", "min_top1") if kind == "onnx" else ("max_drop",)
        given = [option(n) for n in wrong if getattr(self, n) is not None]
        if given:
            use = (
                f"{option('max_drop')} (the task metric)"
                if kind == "onnx"
                else f"{option('max_kld')} / {option('min_top1')}"
            )
            raise ConfigError(f"{', '.join(given)} do not apply to {kind.upper()} models; use {use}")


@dataclass(frozen=True)
class Measurement:
    """What a search space measured of one built candidate (see Candidate for the meanings)."""

    task: str
    metrics: dict[str, float]
    drop: float
    p50_ms: float | None  # None: the device is not here (OptimizeReport.stand_in)
    speedup: float | None
    speedup_ci95: tuple[float, float] | None
    memory_mb: float | None
    where: str | None = None  # None: this machine; else the device the figures were measured on


@dataclass
class Candidate:
    """One recipe and what it measured.

    `drop` is the quality loss against the baseline (ONNX: accuracy points or 1 - cosine; LLMs:
    mean KL divergence); `p50_ms` the eval batch's p50 (LLMs: per generated token); `speedup`
    the baseline's time over this one's, measured interleaved with the baseline.
    """

    name: str
    steps: list[tuple[str, dict[str, Any]]]
    path: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    drop: float | None = None
    p50_ms: float | None = None
    speedup: float | None = None
    speedup_ci95: tuple[float, float] | None = None
    size_bytes: int | None = None
    memory_mb: float | None = None
    memory_estimate_mb: float | None = None  # before building, where the space can tell
    sha256: str | None = None
    task: str | None = None
    cached: bool = False  # its figures came from an earlier run's measurement
    # None: this machine, alone; "ray:NODE": a task sharing that node (measured again before it
    # ships); "ssh://...": the device itself, over ssh (final)
    measured_on: str | None = None
    failed: list[str] = field(default_factory=list)  # the budgets it breaks, or why it was not measured

    @property
    def measured(self) -> bool:
        """Its quality was measured (and its latency, unless the device is not here: OptimizeReport.stand_in)."""
        return self.drop is not None

    @property
    def met(self) -> bool:
        return self.measured and not self.failed

    @property
    def identity(self) -> str:
        """What decides its figures once built: the file, and the runtime when the recipe puts it on
        OpenVINO (one file compiled by OpenVINO and run by ONNX Runtime are two candidates)."""
        from edgeinfer.pipelines.target import USE_OPENVINO

        runtime = self.steps[-1] if self.steps and self.steps[-1][0] == USE_OPENVINO else None
        return f"{self.sha256} {json.dumps(runtime, sort_keys=True)}" if runtime else str(self.sha256)

    # What the measurement cache keeps: the fields of its schema, so the two cannot drift apart.
    FIGURES = tuple(f.name for f in fields(CachedFigures))

    def figures(self) -> dict[str, Any]:
        """What the measurement cache keeps."""
        return {k: getattr(self, k) for k in self.FIGURES}

    def record(self, m: Measurement) -> None:
        """Take the figures a space measured (SearchSpace.measure)."""
        self.task, self.metrics, self.drop, self.p50_ms = m.task, dict(m.metrics), m.drop, m.p50_ms
        self.speedup, self.speedup_ci95, self.memory_mb = m.speedup, m.speedup_ci95, m.memory_mb
        self.measured_on = m.where

    def load(self, entry: dict[str, Any]) -> None:
        for k in self.FIGURES:
            setattr(self, k, entry.get(k))
        self.metrics = dict(self.metrics or {})
        self.speedup_ci95 = tuple(self.speedup_ci95) if self.speedup_ci95 else None  # type: ignore[assignment]
        self.cached = True

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
            "memory_mb": self.memory_mb,
            "memory_estimate_mb": self.memory_estimate_mb,
            "sha256": self.sha256,
            "cached": self.cached,
            "measured_on": self.measured_on or "this machine",
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
    kind: str = "onnx"  # or "gguf"
    chosen: str | None = None
    closest: str | None = None
    replay: dict[str, Any] | None = None  # with --recipe: identical bytes, recorded and measured drop
    pareto: list[str] = field(default_factory=list)  # not beaten on drop, latency and size at once
    cache: str | None = None  # where the measurements are kept (None: not cached, as in a replay)
    # The device is not here: what stood in for it (this machine's CPU), and that latency was not measured.
    stand_in: str | None = None
    remote: str | None = None  # the device every candidate was measured on (--executor ssh://HOST)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pareto": self.pareto,
            "replay": self.replay,
            "device": self.device,
            "objective": self.objective,
            "budgets": {k: v for k, v in asdict(self.budgets).items() if v is not None},
            "task": self.task,
            "chosen": self.chosen,
            "closest": self.closest,
            "cache": self.cache,
            "stand_in": self.stand_in,
            "remote": self.remote,
            "candidates": [c.to_dict() for c in self.candidates],
        }


class CandidateExecutor(Protocol):
    """Where candidates are measured when not in this process (executors.RayExecutor): one result
    per candidate, its figures or why it has none."""

    name: str

    def measure(self, spec: dict[str, Any], candidates: list, progress: Progress = QUIET) -> list[dict[str, Any]]: ...

    def where(self, node: str) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SearchSettings:
    """What `optimize` takes for either kind of model beside the source and its data (see optimize()).

    `executor` is a started executor (executors.RayExecutor), or None to measure in this process.
    """

    profile: DeviceProfile | None = None
    budgets: Budgets = Budgets()
    objective: Objective = Objective.LATENCY
    runs: int = 20
    keep_best: bool = False
    recipe: Path | None = None
    html: Path | None = None
    trust_source: bool = False
    use_cache: bool = True
    force: bool = False
    executor: CandidateExecutor | None = None
    progress: Progress = field(default=QUIET, compare=False)
    device_host: Any = None  # a remote.SshDevice, probed: where candidates are measured

    @property
    def device(self) -> str:
        return getattr(self.profile, "name", "this machine")

    def replay(self, source: str, export_pass: str) -> tuple[dict[str, Any] | None, list, dict[str, Any]]:
        """With a recipe to replay: (what it recorded, its steps after the export, the export's config),
        checked against `source`; without one: (None, [], {})."""
        from edgeinfer.pipelines.deploy.bundle import read_recipe

        if self.recipe is None:
            return None, [], {}
        steps, doc = read_recipe(self.recipe, source)
        code = [f"{name}: {ref}" for name, cfg in steps for ref in code_references(cfg)]
        if code and not self.trust_source:
            raise ConfigError(
                f"recipe {Path(self.recipe).name} names Python code to run ({'; '.join(code)[:200]}); a recipe is "
                f"data and runs no code unless you pass {option('trust_source', True)} (only for a recipe you wrote)"
            )
        export_cfg = dict(steps.pop(0)[1]) if steps and steps[0][0] == export_pass else {}
        return doc, steps, export_cfg

    def measurement_cache(self, context: dict[str, Any]):
        """The cache for this search (None when replaying: a replay measures afresh). Latency from
        tasks sharing a node is not this machine's alone, so each executor has its own entries."""
        from edgeinfer.pipelines.optimize.measurements import MeasurementCache

        if self.recipe is not None:
            return None
        executor = getattr(self.executor, "name", "serial")
        if self.device_host is not None:
            executor = f"ssh:{self.device_host.describe()}"
        elif getattr(self.executor, "final", False):
            executor = f"ray:{getattr(self.executor, 'resource', '')}"
        return MeasurementCache({**context, "executor": executor}, enabled=self.use_cache)


def code_references(value: Any) -> list[str]:
    """The `package.module:function` / `file.py:function` specs in a config: code that would run."""
    from edgeinfer.core.factory import is_factory_spec

    if isinstance(value, str):
        return [value] if is_factory_spec(value) else []
    if isinstance(value, dict):
        return [ref for v in value.values() for ref in code_references(v)]
    if isinstance(value, (list, tuple)):
        return [ref for v in value for ref in code_references(v)]
    return []


class SearchSpace(Protocol):
    """How one kind of model builds and measures its candidates."""

    baseline: Path

    def estimate_memory_mb(self, cand: Candidate) -> float | None:
        """Peak memory expected before building (None: unknown); over budget, it is not built."""
        ...

    def estimate_size_bytes(self, cand: Candidate) -> float | None:
        """The file size expected before building (None: unknown). Estimates need not be exact, only
        ordered as the built files are: with the size objective, a candidate estimated no smaller
        than one that already meets every budget is not built."""
        ...

    def build(self, cand: Candidate) -> Path:
        """Run the candidate's recipe on the baseline (the baseline itself for an empty recipe)."""
        ...

    def measure(self, cand: Candidate) -> Measurement:
        """The built candidate's figures: task metric and drop, p50 and speedup (interleaved with
        the baseline), peak memory."""
        ...

    def remote_spec(self) -> dict[str, Any]:
        """What a Ray task needs to rebuild this space elsewhere (executors.space_from_spec)."""
        ...


def search(
    space: SearchSpace,
    candidates: list[Candidate],
    budgets: Budgets,
    objective: Objective,
    cache,
    progress: Progress = QUIET,
    executor=None,
) -> None:
    """Measure the candidates in order, skipping what cannot win: a candidate over the memory
    budget by estimate is not built, one over the size budget is not measured, and with the size
    objective one no smaller than a candidate that already meets every budget is not measured.
    Figures come from `cache` when it holds them and go into it as soon as they are measured.
    With an executor (Ray), every candidate not cached and not ruled out by its memory estimate is
    built and measured as a task, all at once."""
    if executor is not None:
        _search_parallel(space, candidates, budgets, cache, progress, executor)
        return
    seen: dict[str, str] = {}
    for i, cand in enumerate(candidates):
        best = choose(candidates, objective)
        progress.stage(
            f"candidate {i + 1}/{len(candidates)}: {cand.name}" + (f" (best so far: {best.name})" if best else "")
        )
        hit = cache.get(cand.steps) if cache is not None else None
        if hit is not None:
            cand.load(hit)
        else:
            if _over_memory(cand, space, budgets) or (
                objective is Objective.SIZE and _not_smaller(cand, candidates, space)
            ):
                continue
            try:
                cand.path = space.build(cand)
            except Exception as e:  # a candidate that cannot be built is reported, not fatal
                cand.failed.append(
                    f"could not be built: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"
                )
                continue
            cand.sha256, cand.size_bytes = sha256_file(cand.path), cand.path.stat().st_size
        # A pass may keep its input as is (optimize-graph when no fusion is faster here): a file
        # already among the candidates is not measured twice.
        if cand.identity in seen:
            cand.failed.append(f"the same file as {seen[cand.identity]}")
            cand.path = None
            continue
        seen[cand.identity] = cand.name
        if not cand.measured:
            size = (cand.size_bytes or 0) / 2**20
            if budgets.max_size_mb is not None and size > budgets.max_size_mb:
                cand.failed.append(f"{option('max_size_mb')}: {size:.2f} MiB > {budgets.max_size_mb} (not measured)")
                continue
            rival = next(
                (c for c in candidates if c.met and (c.size_bytes or 0) <= (cand.size_bytes or 0)),
                None,
            )
            if objective is Objective.SIZE and rival is not None:
                cand.failed.append(f"not measured: no smaller than {rival.name}, which meets every budget")
                continue
            why = measure_here(space, cand)
            if why:
                cand.failed.append(why)
                continue
            if cache is not None:
                cache.put(cand.steps, cand.figures())
        cand.failed += broken(cand, budgets)


def measure_here(space: SearchSpace, cand: Candidate) -> str | None:
    """Measure `cand`; when the device's providers are missing on this machine, say so instead
    (a GPU profile optimized on a CPU-only machine): the candidate is listed, not measured."""
    from edgeinfer.core.errors import ProviderUnavailableError

    try:
        cand.record(space.measure(cand))
    except ProviderUnavailableError as e:
        return f"not measurable here: {e.missing or str(e).splitlines()[0]} missing on this machine"
    return None


def _over_memory(cand: Candidate, space: SearchSpace, budgets: Budgets) -> bool:
    estimate = cand.memory_estimate_mb = space.estimate_memory_mb(cand)
    if budgets.max_memory_mb is not None and estimate is not None and estimate > budgets.max_memory_mb:
        cand.failed.append(
            f"not built: estimated memory {estimate:.0f} MiB > {option('max_memory_mb')} {budgets.max_memory_mb}"
        )
        return True
    return False


def _not_smaller(cand: Candidate, candidates: list[Candidate], space: SearchSpace) -> bool:
    """With the size objective: `cand` is estimated no smaller than a candidate that already meets
    every budget, whose estimate is known (an LLM type with more bits per weight), so building it
    could not win. Building a 7B model's Q6_K takes minutes."""
    mine = space.estimate_size_bytes(cand)
    if mine is None:
        return False
    for rival in candidates:
        theirs = space.estimate_size_bytes(rival) if rival.met and rival is not cand else None
        if theirs is not None and theirs <= mine:
            cand.failed.append(f"not built: estimated no smaller than {rival.name}, which meets every budget")
            return True
    return False


def _search_parallel(space: SearchSpace, candidates: list[Candidate], budgets: Budgets, cache, progress, executor):
    from edgeinfer.core.measure import openmp_setting

    pending = []
    for cand in candidates:
        hit = cache.get(cand.steps) if cache is not None else None
        if hit is not None:
            cand.load(hit)
        elif not _over_memory(cand, space, budgets):
            pending.append(cand)
    if pending:
        progress.stage(f"measuring {len(pending)} candidates as {executor.name} tasks")
        for cand, result in zip(pending, executor.measure(space.remote_spec(), pending, progress)):
            if "error" in result:
                cand.failed.append(f"could not be built: {result['error']}")
                continue
            if "unmeasurable" in result:
                cand.failed.append(result["unmeasurable"])
                continue
            if result.get("openmp") != openmp_setting():  # its latency is not comparable with ours
                cand.failed.append(f"measured under another OpenMP setting ({result.get('openmp')})")
                continue
            cand.load(result)
            # "ray:NODE", a shared node; or the device's own node, one task at a time (final)
            cand.cached, cand.measured_on = False, executor.where(result.get("node", "?"))
            if cache is not None:
                cache.put(cand.steps, cand.figures())
    seen: dict[str, str] = {}
    for cand in candidates:
        if cand.sha256 is None:
            continue
        if cand.identity in seen:
            cand.failed.append(f"the same file as {seen[cand.identity]}")
            continue
        seen[cand.identity] = cand.name
        cand.failed += broken(cand, budgets)


def choose(candidates: list[Candidate], objective: Objective) -> Candidate | None:
    """The best candidate that meets every budget: the fastest against the baseline (speedups are
    measured interleaved with it), or the smallest file."""
    met = [c for c in candidates if c.met]
    if not met:
        return None
    if objective is Objective.SIZE:
        return min(met, key=lambda c: (c.size_bytes or 0, -(c.speedup or 0.0)))
    return max(met, key=lambda c: (c.speedup or 0.0, -(c.size_bytes or 0)))


def materialize(
    space: SearchSpace, cand: Candidate, budgets: Budgets, cache, progress: Progress, executor=None
) -> None:
    """Build here a candidate measured in an earlier run or by a Ray task, and measure it again: a
    cache entry is a hint that ordered the search, never a figure that ships (an edited entry could
    claim any speed), and a Ray task's latency was a shared node's. What ships is measured here."""
    if cand.path is not None:
        return
    progress.stage(f"building {cand.name} here (measured {'by a task' if cand.measured_on else 'in an earlier run'})")
    cand.path = space.build(cand)
    digest = sha256_file(cand.path)
    shared = cand.measured_on is not None and cand.measured_on.startswith("ray:")
    if digest != cand.sha256 or shared or cand.cached:
        if digest != cand.sha256:
            log.warning(f"{cand.name} rebuilt to other bytes than the ones measured earlier; measuring it again")
        else:
            progress.stage(
                f"measuring {cand.name} again {'on ' + cand.measured_on if cand.cached and cand.measured_on else 'on this machine, alone'}"
            )
        cand.sha256, cand.size_bytes, cand.cached, cand.measured_on = digest, cand.path.stat().st_size, False, None
        if getattr(executor, "final", False):  # the device is a Ray node: measured there again, not here
            _measure_by(executor, space, cand, progress)
        else:
            cand.record(space.measure(cand))
        cand.failed = broken(cand, budgets)
        if cache is not None:
            cache.put(cand.steps, cand.figures())


def _measure_by(executor, space: SearchSpace, cand: Candidate, progress: Progress) -> None:
    """Measure one candidate as a task of `executor` (its figures replace the candidate's)."""
    from edgeinfer.core.errors import BackendError

    result = executor.measure(space.remote_spec(), [cand], progress)[0]
    if "error" in result or "unmeasurable" in result:
        raise BackendError(f"{cand.name} could not be measured again: {result.get('error') or result['unmeasurable']}")
    path, failed = cand.path, cand.failed
    cand.load(result)
    cand.path, cand.failed, cand.cached = path, failed, False
    cand.measured_on = executor.where(result.get("node", "?"))


def conclude(
    report: OptimizeReport, space: SearchSpace, cache, objective: Objective, progress: Progress, executor=None
):
    """Choose (rebuilding a cached choice, re-choosing if its rebuilt bytes no longer meet the
    budgets), the Pareto front, and the closest candidate when none meets."""
    report.pareto = pareto_front(report.candidates)
    # A candidate measured elsewhere (a Ray task on a shared node, an earlier run) is built and, if
    # its latency was a shared node's, measured again here; if it no longer leads, the new leader
    # gets the same treatment. Each candidate is re-measured at most once, so this ends.
    while (best := choose(report.candidates, objective)) is not None:
        materialize(space, best, report.budgets, cache, progress, executor)
        if best.met and choose(report.candidates, objective) is best:
            report.chosen = best.name
            report.pareto = pareto_front(report.candidates)
            return best
    # Measured candidates first; else the built ones, on what is known of them (their size).
    known = [c for c in report.candidates if c.measured] or [c for c in report.candidates if c.size_bytes]
    if known:
        closest = min(known, key=lambda c: shortfall(c, report.budgets))
        report.closest = closest.name
        return closest
    return None


# How much worse than recorded a replayed model may score when its bytes differ (a pass that is
# not bit-for-bit deterministic, another ONNX Runtime).
REPLAY_TOLERANCE = 0.005


def finish(
    report: OptimizeReport, space: SearchSpace, cache, settings: SearchSettings, replay: dict[str, Any] | None
) -> Candidate | None:
    """The end of a search for either kind of model: the replay check, the choice (conclude), the
    HTML report, and the candidate to write as a bundle, built here and measured (None: no bundle)."""
    progress = settings.progress
    if replay is not None:
        report.replay = check_replay(report.candidates[0], replay)
    report.cache = str(cache.root) if cache is not None else None
    pick = conclude(report, space, cache, settings.objective, progress, settings.executor)
    if settings.html is not None:
        write_html(report.candidates, report, settings.html)
    if pick is None or not (report.chosen or settings.keep_best):
        return None
    materialize(space, pick, report.budgets, cache, progress, settings.executor)
    if not pick.measured:  # --keep-best on a candidate ruled out before measuring
        pick.record(space.measure(pick))
        pick.failed = [f for f in pick.failed if "not measured" not in f] + broken(pick, report.budgets)
    return pick


def check_replay(cand: Candidate, doc: dict[str, Any]) -> dict[str, Any]:
    want = str(doc.get("result", {}).get("sha256") or "")
    recorded_drop = doc.get("measured", {}).get("drop")
    out = {
        "identical_bytes": bool(want) and cand.sha256 == want,
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


def pareto_front(candidates: list[Candidate]) -> list[str]:
    """The measured candidates no other one beats on quality drop, latency and size at once. Latency
    is the figure the choice ranks by (the baseline's time over the candidate's, measured interleaved
    with it), so the chosen candidate is never shown as dominated by a p50 taken in another run; p50
    where no speedup was measured."""
    measured = [c for c in candidates if c.p50_ms is not None and c.drop is not None and c.size_bytes]

    def latency(c: Candidate) -> float:
        return 1.0 / c.speedup if c.speedup else float(c.p50_ms or 0.0)

    def beats(a: Candidate, b: Candidate) -> bool:
        pa, pb = (a.drop, latency(a), a.size_bytes), (b.drop, latency(b), b.size_bytes)
        return all(x <= y for x, y in zip(pa, pb)) and pa != pb  # type: ignore[operator]

    return [c.name for c in measured if not any(beats(o, c) for o in measured if o is not c)]


def write_html(candidates: list[Candidate], result: OptimizeReport, path: Path) -> None:
    """compare's HTML report, one row per measured candidate (the choice marked), and the plot."""
    from edgeinfer.pipelines.compare import CompareRow, ComparisonReport
    from edgeinfer.pipelines.compare import write_html as write_compare_html

    rows = [
        CompareRow(
            model=c.name + (" (chosen)" if c.name == result.chosen else ""),
            file_size_bytes=c.size_bytes or 0,
            latency_ms={"p50": c.p50_ms or 0.0},
            speedup=c.speedup or 1.0,
            speedup_ci95=c.speedup_ci95 or (c.speedup or 1.0, c.speedup or 1.0),  # none measured: no bar
            metrics=c.metrics,
            providers=[],
        )
        for c in candidates
        if c.measured and c.p50_ms is not None  # a device not here: no latency to plot
    ]
    if not rows:
        return
    summary = (
        f"{len(rows)} candidates measured for {result.device} (objective: {result.objective}); "
        + (f"chosen: {result.chosen}" if result.chosen else "none met the budgets")
        + f"; Pareto front: {', '.join(result.pareto) or 'none'}"
    )
    pareto = tuple(n + (" (chosen)" if n == result.chosen else "") for n in result.pareto)
    report = ComparisonReport(result.task, "", 0, {}, 0, rows[0].model, rows)
    write_compare_html(report, path, title="edgeinfer optimize", summary=summary, pareto=pareto)


def broken(cand: Candidate, budgets: Budgets) -> list[str]:
    """The budgets a measured candidate breaks, each with its figure."""
    out = []
    if not cand.measured:
        return out
    top1 = cand.metrics.get("top1_agreement")
    checks = [
        ("max_drop", cand.drop, budgets.max_drop, "dropped {v:.4f} > {b}"),
        ("max_kld", cand.drop, budgets.max_kld, "KL {v:.4f} > {b}"),
        ("max_latency_ms", cand.p50_ms, budgets.max_latency_ms, "p50 {v:.3f} ms > {b}"),
        ("max_size_mb", (cand.size_bytes or 0) / 2**20, budgets.max_size_mb, "{v:.2f} MiB > {b}"),
        ("max_memory_mb", cand.memory_mb, budgets.max_memory_mb, "peak {v:.0f} MiB > {b}"),
    ]
    for name, value, limit, text in checks:
        if value is not None and limit is not None and value > limit + 1e-12:
            out.append(f"{option(name)}: {text.format(v=value, b=limit)}")
    if budgets.min_top1 is not None and top1 is not None and top1 < budgets.min_top1:
        out.append(f"{option('min_top1')}: top-1 {top1:.4f} < {budgets.min_top1}")
    return out


def shortfall(cand: Candidate, budgets: Budgets) -> float:
    """How far a candidate is from meeting every budget, as the largest relative overshoot."""
    worst = 0.0
    pairs = [
        (cand.drop, budgets.max_drop),
        (cand.drop, budgets.max_kld),
        (cand.p50_ms, budgets.max_latency_ms),
        ((cand.size_bytes or 0) / 2**20, budgets.max_size_mb),
        (cand.memory_mb, budgets.max_memory_mb),
    ]
    for value, limit in pairs:
        if value is not None and limit is not None:
            worst = max(worst, (value - limit) / max(limit, 1e-9))
    top1 = cand.metrics.get("top1_agreement")
    if top1 is not None and budgets.min_top1:
        worst = max(worst, (budgets.min_top1 - top1) / budgets.min_top1)
    return worst if cand.size_bytes is not None else math.inf
