"""The ONNX path of `optimize`: FP32 (exported from the source, or the .onnx given), the graph
pass, and every registered quantization method's candidates (compress/onnx_methods/: INT8 dynamic /
static per channel and per tensor, FP16, INT4) whose precision the profile has, one QNN QDQ
candidate for a Hexagon NPU; each measured against FP32 on the evaluation data."""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any

from edgeinfer.core.artifact import copy_with_sidecar, load_artifact, sidecar_path
from edgeinfer.core.errors import ConfigError, option
from edgeinfer.core.io import scratch_dir
from edgeinfer.core.progress import Progress
from edgeinfer.pipelines.optimize.search import (
    Budgets,
    Candidate,
    Measurement,
    Objective,
    OptimizeReport,
    SearchSettings,
    broken,
    finish,
    search,
)

log = logging.getLogger(__name__)

# Structured pruning (channels removed: really faster) at these ratios, fine-tuned this many epochs.
PRUNE_RATIOS = (0.25, 0.5)
PRUNE_EPOCHS = 3
# Nodes the keep-in-float search may return to float before it gives up on a static candidate.
KEEP_FLOAT_MAX = 12


def candidate_recipes(
    profile, model_type: str | None, has_calib: bool, can_prune: bool = False
) -> list[tuple[str, list]]:
    """The recipes worth measuring for this device and model: graph fusions for transformers; each
    registered quantization method's search variants whose precision the profile lists (a method
    declares them, and whether it suits transformers, follows the graph pass or needs calibration
    data: compress.onnx_quant.register_method); structured pruning with fine-tuning when there is
    training data and a PyTorch source."""
    from edgeinfer.compress.graph_opt import ORT_MODEL_TYPES
    from edgeinfer.compress.onnx_quant import methods
    from edgeinfer.pipelines.quantize import device_quant_config

    def quant(method: str, **overrides) -> tuple[str, dict]:
        """A quantize-onnx step as `quantize --device P` would configure it (one source of defaults),
        written as what differs from the config's own defaults, so recipes stay short to read."""
        from edgeinfer.compress.onnx_quant import OnnxQuantConfig

        full = device_quant_config(method, profile, **overrides).to_dict()
        plain = OnnxQuantConfig(method=full["method"]).to_dict()
        return ("quantize-onnx", {k: v for k, v in full.items() if k == "method" or v != plain[k]})

    if quant_recipe(profile) == "qnn":
        # The Hexagon HTP runs QDQ graphs in onnxruntime's QNN configuration and nothing else whole
        # (dynamic INT8 and FP16 would fall back to the CPU): one candidate, with the device's types.
        return [("int8-static-qnn", [quant("static")])]
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
        for method in methods().values():
            if method.precision not in precisions or (method.needs_calibration and not has_calib):
                continue
            if (transformer and not method.transformers) or (head and not method.after_graph):
                continue
            for variant in method.search:
                recipes.append((f"{prefix}{variant.name}", [*head, quant(method.name, **dict(variant.overrides))]))
    recipes += openvino_recipes(profile, precisions)
    if can_prune and "fp32" in precisions:
        for ratio in PRUNE_RATIOS:
            cfg = {"prune": {"method": "structured", "ratio": ratio}, "finetune": {"epochs": PRUNE_EPOCHS}}
            recipes.append((f"pruned-{round(ratio * 100)}", [("prune", cfg)]))
    return recipes


def openvino_recipes(profile, precisions: set[str]) -> list[tuple[str, list]]:
    """The model compiled by OpenVINO on the profile's OpenVINO device (a profile with an
    [openvino] table, OpenVINO installed): FP32; BF16 where the profile lists it and the device
    has it; INT8 by NNCF (its float remainder in BF16 where that is allowed, else FP32)."""
    from edgeinfer.pipelines.target import USE_OPENVINO
    from edgeinfer.runtime.openvino import device_capabilities, openvino_version

    device = getattr(profile, "openvino_device", None)
    if device is None or openvino_version() is None:
        return []
    caps = device_capabilities(device)
    bf16 = "bf16" in precisions and "BF16" in caps
    float_precision = "bf16" if bf16 else "f32"
    out: list[tuple[str, list]] = []
    if "fp32" in precisions:
        out.append(("openvino-fp32", [(USE_OPENVINO, {"device": device, "precision": "f32"})]))
    if bf16:
        out.append(("openvino-bf16", [(USE_OPENVINO, {"device": device, "precision": "bf16"})]))
    if "int8" in precisions:
        run = (USE_OPENVINO, {"device": device, "precision": float_precision})
        out.append((f"openvino-int8{'-bf16' if bf16 else ''}", [("quantize-nncf", {}), run]))
    return out


def from_source(steps: list[tuple[str, dict[str, Any]]]) -> bool:
    """A recipe whose first pass takes the PyTorch source (pruning), not the exported baseline."""
    from edgeinfer.pipelines.passes import Takes, get_pass

    return bool(steps) and get_pass(steps[0][0]).takes in (Takes.SOURCE, Takes.FACTORY)


def quant_recipe(profile) -> str:
    """The quantization recipe a device profile names (generic, or qnn for Hexagon NPUs)."""
    return profile.quant.recipe if profile is not None else "generic"


def _bits(steps: list[tuple[str, dict[str, Any]]]) -> int:
    """Bits per weight of what a recipe's last step makes (its method's precision; 32: float)."""
    from edgeinfer.compress.onnx_quant import methods

    quant = [c for p, c in steps if p in ("quantize-onnx", "quantize-nncf")]
    if any(p == "quantize-nncf" for p, _ in steps):
        return 8
    method = methods().get(str(quant[-1].get("method"))) if quant else None
    return method.bits if method is not None else 32


class OnnxSpace:
    """Builds candidates with the passes and measures each with `compare` against FP32."""

    def __init__(
        self,
        source: str,
        baseline: Path,
        work: Path,
        data: str,
        profile,
        ctx,
        runs: int,
        progress: Progress,
        stand_in: bool = False,
        remote=None,
    ) -> None:
        self.source, self.baseline, self.work, self.data, self.profile = source, baseline, work, data, profile
        self.ctx, self.runs, self.progress, self.stand_in = ctx, runs, progress, stand_in
        self.remote = remote  # a probed remote.SshDevice: candidates are measured there
        self._feeds: Path | None = None
        self._batches = None  # the evaluation data, loaded once for every candidate's comparison

    def estimate_memory_mb(self, cand: Candidate) -> float | None:
        return None  # cheap to build; measured after

    def estimate_size_bytes(self, cand: Candidate) -> float | None:
        return None  # a pass's effect on size is known once it has run

    def build(self, cand: Candidate) -> Path:
        from edgeinfer.pipelines.passes import run_recipe

        if not cand.steps:
            return self.baseline
        start = self.source if from_source(cand.steps) else self.baseline
        return run_recipe(start, self.work / f"{cand.name}.onnx", cand.steps, self.ctx).path

    def measure(self, cand: Candidate) -> Measurement:
        from edgeinfer.pipelines.compare import EvalTask, compare_models, metric_drop
        from edgeinfer.pipelines.optimize.measurements import onnx_peak_memory_mb
        from edgeinfer.pipelines.target import engine_of, onnx_target

        assert cand.path is not None
        other = cand.path if cand.path != self.baseline else self._baseline_copy()
        if self._batches is None:  # what compare_models would load from self.data, for every candidate
            from edgeinfer.core.data import load_batches
            from edgeinfer.pipelines.target import onnx_runner

            inputs = onnx_runner(self.baseline, profile_first_run=False).inputs
            self._batches = load_batches(self.data, inputs, 8, load_artifact(self.baseline).meta.get("tokenizer"))
        if self.remote is not None:
            return self._measure_on_device(cand)
        self.progress.stage(f"measuring {cand.name} against FP32, interleaved")
        # A device that is not here: this machine's CPU stands in for its kernels; the quality and
        # size figures hold, a latency would not be the device's and is not taken.
        target = engine_of(cand.steps, onnx_target(self.profile))  # OpenVINO when the recipe ends on it
        if self.stand_in:
            from edgeinfer.pipelines.deploy.bundle import stand_in_for

            target = stand_in_for(target)
        report = compare_models(
            self.baseline, [other], self.data, task=EvalTask.AUTO, where=target,
            runs=3 if self.stand_in else self.runs, batch_size=8, data=self._batches, progress=self.progress,
        )  # fmt: skip
        row = report.rows[1]
        drop = metric_drop(row.metrics, row.delta)
        providers = [p.value for p in target.providers] if target.providers else ["cpu"]
        memory = onnx_peak_memory_mb(cand.path, self.feeds(), providers, target.threads, target.openvino_options())
        if self.stand_in:
            return Measurement(report.task, dict(row.metrics), drop, None, None, None, memory)
        return Measurement(
            report.task, dict(row.metrics), drop, row.latency_ms["p50"], row.speedup, row.speedup_ci95, memory
        )

    def _measure_on_device(self, cand: Candidate) -> Measurement:
        """Ship the candidate with the baseline and the eval inputs to the device; score the outputs
        that come back here, take its latency (interleaved there) and peak memory as measured there."""
        import numpy as np

        from edgeinfer.core.errors import ProviderUnavailableError
        from edgeinfer.core.measure import speedup_ci
        from edgeinfer.pipelines.compare import EvalTask, metric_drop, resolve_task, score, scored_outputs

        assert cand.path is not None and self._batches is not None and self.remote is not None
        wanted = [p.value for p in self.profile.providers] if self.profile is not None else ["CPUExecutionProvider"]
        providers = self.remote.providers_for(wanted)
        threads = getattr(self.profile, "threads", None)
        self.progress.stage(f"measuring {cand.name} against FP32 on {self.remote.destination}, interleaved there")
        meta = load_artifact(self.baseline).meta
        task = resolve_task(EvalTask.AUTO, self._batches, meta)
        names = list(meta.get("outputs") or [])
        scored = scored_outputs(task, names) if names else [0]  # only these come back from the device
        job = {"providers": providers, "threads": threads, "runs": self.runs, "outputs": scored}
        result, outputs = self.remote.measure(self.baseline, cand.path, self._batches.batches, job)
        dropped = [p for p in providers if p not in result.providers]
        if dropped:  # onnxruntime there dropped a provider it could not create for this model
            raise ProviderUnavailableError(
                f"{self.remote.destination} ran {cand.name} without {', '.join(dropped)}", missing=", ".join(dropped)
            )
        metrics, delta = score(task, outputs["base"], outputs["cand"], self._batches, meta.get("head"))
        drop = metric_drop(metrics, delta)
        base_s, cand_s = result.times_s["base"], result.times_s["cand"]
        speedup, lo, hi = speedup_ci(base_s, cand_s)
        return Measurement(
            task.value, metrics, drop, float(np.median(cand_s) * 1000.0), speedup, (lo, hi), result.memory_mb,
            where=f"ssh://{self.remote.describe()}",
        )  # fmt: skip

    def remote_spec(self) -> dict[str, Any]:
        sidecar = sidecar_path(self.baseline)
        return {
            "kind": "onnx", "source": self.source, "baseline": self.baseline.read_bytes(),
            "sidecar": sidecar.read_bytes() if sidecar.exists() else None, "data": self.data,
            "calib": self.ctx.calib, "train_data": self.ctx.train_data, "profile": self.profile, "runs": self.runs,
            "trust_source": self.ctx.trust_source, "stand_in": self.stand_in,
        }  # fmt: skip

    def _baseline_copy(self) -> Path:
        """FP32 measured against itself: a copy, so compare times two sessions as for any candidate."""
        copy = self.work / "fp32-copy.onnx"
        if not copy.exists():
            copy_with_sidecar(self.baseline, copy)
        return copy

    def feeds(self) -> Path:
        """The first eval batch as an .npz, for the peak-memory probe."""
        import numpy as np

        from edgeinfer.core.data import load_batches
        from edgeinfer.pipelines.target import onnx_runner

        if self._feeds is None:
            runner = onnx_runner(self.baseline, profile_first_run=False)
            tokenizer = load_artifact(self.baseline).meta.get("tokenizer")
            batches = load_batches(self.data, runner.inputs, 8, tokenizer, 8)
            names = {i.name for i in runner.inputs}
            self._feeds = self.work / "feeds.npz"
            np.savez(self._feeds, **{k: v for k, v in batches.batches[0].items() if k in names})  # pyright: ignore[reportArgumentType]
        return self._feeds


def keep_float_recipes(
    candidates: list[Candidate], baseline: Path, budgets: Budgets, data: str, calib: str, profile, progress: Progress
) -> list[tuple[str, list]]:
    """For each static INT8 candidate that misses only the metric budget: the same quantization
    with the nodes whose activations lose most (SQNR against the float graph, worst first) kept in
    float, as few as `quantize --max-drop`'s greedy search needs to meet the budget (or its best)."""
    from dataclasses import replace

    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.pipelines.quantize import quantize

    if budgets.max_drop is None:
        return []
    out: list[tuple[str, list]] = []
    for c in candidates:
        if not c.measured or c.met or len(c.steps) != 1 or c.steps[0][0] != "quantize-onnx":
            continue
        step = c.steps[0][1]
        if step.get("method") != "static" or broken(c, replace(budgets, max_drop=None)):
            continue  # not QDQ, or another budget fails too: float nodes would not mend that
        progress.stage(f"{c.name} misses {option('max_drop')}: finding the nodes to keep in float")
        with scratch_dir("keep-float") as tmp:
            try:
                art, _ = quantize(
                    baseline, Path(tmp) / "search.onnx", OnnxQuantConfig.from_dict(step), calib=calib,
                    eval_data=data, max_drop=budgets.max_drop, profile=profile, compare=False, runs=3,
                )  # fmt: skip
            except Exception as e:  # the search is an extra candidate, never fatal
                log.warning(f"keep-in-float search for {c.name} failed: {str(e).splitlines()[0][:200]}")
                continue
        nodes = list(art.steps[-1].config.get("nodes_excluded") or [])[:KEEP_FLOAT_MAX]
        if nodes:
            out.append((f"{c.name}-keep{len(nodes)}", [("quantize-onnx", {**step, "exclude_nodes": nodes})]))
    return out


def optimize_onnx(
    source: str, bundle: Path, *, data: str, calib: str | None, train_data: str | None, settings: SearchSettings
) -> OptimizeReport:
    """The ONNX search (see optimize.optimize): the FP32 baseline, the candidates, the bundle."""
    from edgeinfer.core.io import sha256_file
    from edgeinfer.pipelines.deploy.bundle import write_bundle
    from edgeinfer.pipelines.optimize.measurements import data_sha256
    from edgeinfer.pipelines.passes import PassContext, run_pass
    from edgeinfer.pipelines.target import USE_OPENVINO, absent_accelerators

    profile, budgets, objective, progress = settings.profile, settings.budgets, settings.objective, settings.progress
    if train_data is not None and (Path(source).suffix.lower() == ".onnx" or Path(source).is_dir()):
        raise ConfigError(
            f"{option('train_data')} adds pruning candidates, which start from a PyTorch factory "
            f"(package.module:function), not from {Path(source).name}"
        )
    replay, replay_steps, export_cfg = settings.replay(source, "export-onnx")
    # The device reached over ssh is the target; else one whose providers are not here has none.
    reached = settings.device_host is not None or getattr(settings.executor, "final", False)
    stand_in = None if reached else no_target(settings, searching=replay is None)
    with scratch_dir("optimize") as tmp:
        work = Path(tmp)
        ctx = PassContext(
            calib=calib or data, train_data=train_data, profile=profile, trust_source=settings.trust_source,
            compare=False, progress=progress,
        )  # fmt: skip
        if Path(source).suffix.lower() == ".onnx":
            baseline = Path(source)
            load_artifact(baseline)  # a hostile or missing file fails here, as everywhere
            export_steps: list[tuple[str, dict[str, Any]]] = []
        else:
            progress.stage(f"exporting {source} (the FP32 baseline)")
            baseline = run_pass("export-onnx", source, work / "fp32.onnx", export_cfg, ctx).path
            export_steps = [("export-onnx", export_cfg)]
        model_type = load_artifact(baseline).source.get("model_type")
        if replay:
            recipes = [("replay", replay_steps)]
        else:
            recipes = candidate_recipes(profile, model_type, has_calib=True, can_prune=train_data is not None)
            if objective is Objective.SIZE:  # small files first: a met one rules out larger ones unmeasured
                recipes.sort(key=lambda r: _bits(r[1]))
        if settings.device_host is not None:  # the device's measuring script runs onnxruntime
            recipes = [(n, s) for n, s in recipes if not (s and s[-1][0] == USE_OPENVINO)]
        candidates = [Candidate(name, steps) for name, steps in recipes]
        cache = settings.measurement_cache(
            {
                "input_sha256": sha256_file(baseline),
                "data_sha256": data_sha256(data),
                "calib_sha256": data_sha256(calib or data),
                "train_data_sha256": data_sha256(train_data) if train_data else None,
                # a pruned candidate is built from the source: its code or files are part of the key
                "source_sha256": data_sha256(source) if train_data else None,
                "runs": settings.runs,
                "device": settings.device,
                "providers": [p.value for p in profile.providers] if profile is not None else None,
                "threads": getattr(profile, "threads", None),
                "stand_in": stand_in is not None,  # quality on this CPU only: another entry
            }
        )
        space = OnnxSpace(
            source, baseline, work, data, profile, ctx, settings.runs, progress, stand_in is not None,
            remote=settings.device_host,
        )  # fmt: skip
        if quant_recipe(profile) == "qnn" and platform.machine().lower() in ("x86_64", "amd64"):
            log.warning(
                "latency here is the QNN HTP simulator's on this x86 CPU, not a Hexagon NPU's: it ranks "
                "nothing; the candidate is chosen on the metric, and `verify` on the device measures latency"
            )
        search(space, candidates, budgets, objective, cache, progress, settings.executor)
        if not replay:
            derived = [
                Candidate(name, steps)
                for name, steps in keep_float_recipes(
                    candidates, baseline, budgets, data, calib or data, profile, progress
                )
            ]
            search(space, derived, budgets, objective, cache, progress, settings.executor)
            candidates += derived
        task = next((c.task for c in candidates if c.task), "unknown")
        result = OptimizeReport(settings.device, objective.value, budgets, task, candidates, kind="onnx")
        result.stand_in = stand_in
        if settings.device_host is not None:
            result.remote = settings.device_host.describe()
        elif reached:
            result.remote = (
                f"the Ray node(s) declaring {getattr(settings.executor, 'resource', '')!r}, one task at a time"
            )
        pick = finish(result, space, cache, settings, replay)
        if pick is not None and pick.path is not None:
            progress.stage(f"writing the bundle {bundle.name} ({pick.name})")
            write_bundle(
                bundle, pick.path, baseline, recipe=pick.steps if from_source(pick.steps) else export_steps + pick.steps,
                source=source, data=data, profile=profile, report=result, candidate=pick, force=settings.force,
                golden_on_cpu=bool(absent_accelerators(profile)),
            )  # fmt: skip
    return result


def no_target(settings: SearchSettings, *, searching: bool) -> str | None:
    """None when the device's providers are here (or no device was named); else what stands in for
    the device and why, after refusing what needs the device itself: a latency budget (exit 2), and
    the latency objective for a search (exit 1: nothing could be chosen), naming what to do instead."""
    import platform

    from edgeinfer.core.errors import NoTargetError
    from edgeinfer.pipelines.target import absent_accelerators

    absent = absent_accelerators(settings.profile)
    if not absent:
        return None
    device = settings.device
    why = "; ".join(f"{p.value} ({p.how_to_get()})" for p in absent)
    if settings.budgets.max_latency_ms is not None:
        raise ConfigError(
            f"{option('max_latency_ms')} needs latency measured on {device}, and its providers are not here: {why}; "
            f"measure on the device with {option('executor', 'ssh://HOST')}, or drop the latency budget and pass "
            f"{option('objective', 'size')}"
        )
    if searching and settings.objective is Objective.LATENCY:
        raise NoTargetError(
            f"{device} is not here ({why}), so its latency cannot be measured and the latency objective "
            f"cannot choose; measure on the device with {option('executor', 'ssh://HOST')}, or pass "
            f"{option('objective', 'size')} to choose the smallest candidate within the quality budgets, "
            "measured here on the CPU"
        )
    machine = platform.machine() or "this CPU"
    return (
        f"this machine's CPU ({machine}) stands in for {device}: quality, size and memory measured here, "
        f"latency not measured (no target: {', '.join(p.short for p in absent)} not here)"
    )
