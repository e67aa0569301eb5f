"""`edgeinfer quantize` for ONNX: device-aware config, calibration, and a comparison with the parent.

Every quantized model is measured against its float parent (metric and interleaved latency); a
result slower than its parent is reported loudly. `--max-drop` keeps the noisiest nodes in float
until the metric is within budget.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeinfer.core.artifact import Artifact, ModelFormat, Step, load_artifact
from edgeinfer.core.errors import ConfigError, InputError, option, parse_choice
from edgeinfer.core.formats import load_onnx
from edgeinfer.core.io import atomic_path, check_output, scratch_dir
from edgeinfer.core.progress import QUIET, Progress
from edgeinfer.devices import host_isa

if TYPE_CHECKING:
    from edgeinfer.pipelines.compare import ComparisonReport

log = logging.getLogger(__name__)


def device_quant_config(method: str, profile=None, **overrides: Any):
    """The OnnxQuantConfig for `method` on the device `profile` (its [quant] table, else the
    defaults in devices.QuantDefaults) and this machine (7-bit weights where the CPU lacks VNNI,
    unless the profile says), with `overrides` (the user's options; None keeps the device's)
    on top. `quantize` and `optimize` both build their configs here, so one profile means one thing."""
    from dataclasses import asdict

    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.devices import QuantDefaults, host_has_vnni

    device = asdict(profile.quant if profile is not None else QuantDefaults())
    if device["reduce_range"] is None:
        device["reduce_range"] = not host_has_vnni()
    given = {k: v for k, v in overrides.items() if v is not None}
    return OnnxQuantConfig.from_dict({"method": method.lower(), **device, **given})


def build_config(
    method: str,
    profile,
    *,
    calib_method: str,
    activation_type: str | None,
    weight_type: str | None,
    per_channel: bool | None,
    symmetric: bool,
    reduce_range: bool | None,
    exclude: tuple[tuple, tuple],
    block_size: int,
):
    from edgeinfer.compress.onnx_quant import CalibMethod, QType

    def choice(enum, value, what):  # errors say what the user typed: "calibration method", not a field
        return None if value is None else parse_choice(enum, value, what)

    return device_quant_config(
        method,
        profile,
        calibration=choice(CalibMethod, calib_method, "calibration method"),
        activation_type=choice(QType, activation_type, "activation type"),
        weight_type=choice(QType, weight_type, "weight type"),
        per_channel=per_channel,
        symmetric=symmetric,
        reduce_range=reduce_range,
        exclude_nodes=exclude[0],
        exclude_op_types=exclude[1],
        block_size=block_size,
    )


def quantize_model(
    model: Path,
    output: Path,
    *,
    method: str,
    calib: str | None = None,
    calib_method: str = "minmax",
    calib_samples: int | None = None,
    batch_size: int = 8,
    activation_type: str | None = None,
    weight_type: str | None = None,
    per_channel: bool | None = None,
    symmetric: bool = False,
    reduce_range: bool | None = None,
    exclude: list[str] | None = None,
    block_size: int = 128,
    profile=None,
    eval_data: str | None = None,
    report: bool = False,
    max_drop: float | None = None,
    runs: int = 30,
    force: bool = False,
    progress: Progress = QUIET,
) -> tuple[Artifact, dict[str, Any]]:
    """Quantize an ONNX model and compare it with its float parent (metric and interleaved latency).

    Args:
        model, output: the float .onnx model and where to write the quantized one.
        method: a registered method (dynamic, static, int4, fp16; see compress/onnx_methods/).
        calib, calib_method, calib_samples, batch_size: calibration data for static (an .npz, a folder
            of them, a .txt of sentences, or a factory), its method and size.
        activation_type, weight_type, per_channel, symmetric, reduce_range, exclude, block_size: the
            OnnxQuantConfig; None takes the device profile's value, else the default.
        profile: a DeviceProfile (quantization defaults, recipe, fast precisions).
        eval_data: data on which the result is compared with its parent (else the calibration data).
        report: also measure per-tensor SQNR; max_drop: keep the noisiest nodes in float until the
            metric drops by at most this much on eval_data.
        runs: interleaved timing runs; force: overwrite an existing output.

    Returns (artifact, result) where result holds the comparison, and the SQNR rows and search steps
    when asked for.
    """
    from edgeinfer.compress.onnx_quant import split_excludes

    model, output = Path(model), Path(output)
    _check_paths(model, output, force)  # before parsing the model: an existing output is refused at once
    graph = load_onnx(model)
    cfg = build_config(
        method,
        profile,
        calib_method=calib_method,
        activation_type=activation_type,
        weight_type=weight_type,
        per_channel=per_channel,
        symmetric=symmetric,
        reduce_range=reduce_range,
        exclude=split_excludes(graph, exclude or []),
        block_size=block_size,
    )
    return quantize(
        model,
        output,
        cfg,
        calib=calib,
        calib_samples=calib_samples,
        batch_size=batch_size,
        profile=profile,
        eval_data=eval_data,
        report=report,
        max_drop=max_drop,
        runs=runs,
        force=force,
        progress=progress,
        graph=graph,
    )


def _check_paths(model: Path, output: Path, force: bool) -> None:
    if ModelFormat.of(model) is not ModelFormat.ONNX or ModelFormat.of(output) is not ModelFormat.ONNX:
        raise ConfigError("ONNX quantization takes an .onnx model and writes an .onnx file")
    check_output(output, [model], force)


def quantize(
    model: Path,
    output: Path,
    config,
    *,
    calib: str | None = None,
    calib_samples: int | None = None,
    batch_size: int = 8,
    profile=None,
    eval_data: str | None = None,
    report: bool = False,
    max_drop: float | None = None,
    runs: int = 30,
    force: bool = False,
    progress: Progress = QUIET,
    graph=None,
    compare: bool = True,
) -> tuple[Artifact, dict[str, Any]]:
    """Quantize `model` as `config` (an OnnxQuantConfig) says, and compare the result with its parent.

    The config-first entry point: `quantize(m, out, OnnxQuantConfig("static", calibration="entropy"),
    calib="calib.npz")`. quantize_model() builds the config from flat options and device defaults.

    Args:
        model, output: the float .onnx model and where to write the quantized one.
        config: the OnnxQuantConfig (method, types, exclusions, ...).
        calib, calib_samples, batch_size: calibration data for methods that need it.
        profile: a DeviceProfile (QNN recipe checks, fast-precision warning).
        eval_data, report, max_drop, runs, force, progress: as for quantize_model.
        graph: the model already loaded with onnx (without external data), so it is not parsed twice.
        compare: compare the result with its parent (off when the caller measures it anyway: optimize).
    """
    from edgeinfer.compress.onnx_quant import (
        Recipe,
        check_not_quantized,
        methods,
        quantize_onnx,
    )
    from edgeinfer.core.data import load_batches
    from edgeinfer.pipelines.compare import compare_models
    from edgeinfer.pipelines.target import onnx_runner

    model, output = Path(model), Path(output)
    _check_paths(model, output, force)
    parent = load_artifact(model)
    if max_drop is not None and not eval_data:
        raise ConfigError(
            f"{option('max_drop')} needs {option('eval_data')}: the search measures the task metric on it"
        )
    graph = graph if graph is not None else load_onnx(model)
    check_not_quantized(graph)
    _check_device_precision(config.method, profile)
    cfg = config
    if cfg.recipe is Recipe.QNN:
        if cfg.method != "static":
            raise ConfigError(
                f"device {getattr(profile, 'name', 'qnn')} runs QDQ models: use {option('method', 'static')}"
            )
        dynamic = [i.name for i in graph.graph.input if any(not d.dim_value for d in i.type.tensor_type.shape.dim)]
        if dynamic:
            raise ConfigError(
                f"{getattr(profile, 'name', 'the QNN recipe')} needs fixed shapes, but input(s) {', '.join(dynamic)} are dynamic; "
                f"re-export with {option('static_shapes', True)}"
            )
    inputs = onnx_runner(model, profile_first_run=False).inputs
    batches = None
    if methods()[cfg.method].needs_calibration:
        if not calib:
            raise InputError(
                f"{option('method', 'static')} needs {option('calib')} (an .npz, a folder of them, a .txt of sentences, or "
                "package.module:function)"
            )
        progress.stage(f"loading calibration data {calib}")
        batches = load_batches(calib, inputs, batch_size, parent.meta.get("tokenizer"), calib_samples).batches

    def run_once(cfg_now, dest: Path) -> dict[str, Any]:
        return quantize_onnx(model, dest, cfg_now, batches)

    eval_batches = None
    if eval_data:
        eval_batches = load_batches(eval_data, inputs, batch_size, parent.meta.get("tokenizer"))
    compare_data = eval_batches or (
        load_batches(calib, inputs, batch_size, parent.meta.get("tokenizer"), 64) if calib else None
    )
    if not compare:
        compare_data = None
    extra: dict[str, Any] = {}
    with atomic_path(output, overwrite=force) as tmp:
        progress.stage(f"quantizing ({cfg.method}{', calibrating with ' + cfg.calibration if batches else ''})")
        facts = run_once(cfg, tmp)
        # Which kernels this machine has (the reduce_range default follows VNNI): the record says
        # where the figures below were measured.
        facts["host_isa"] = host_isa()
        if report or max_drop is not None:
            if cfg.method != "static":
                raise ConfigError(
                    f"{option('report')} and {option('max_drop')} measure QDQ nodes: use {option('method', 'static')}"
                )
            from edgeinfer.compress.qdq_report import activation_sqnr

            progress.stage("measuring per-tensor quantization error (SQNR)")
            extra["sqnr"] = activation_sqnr(model, tmp, batches)
        if max_drop is not None:
            cfg, search = _search_exclusions(
                model, tmp, cfg, extra["sqnr"], eval_batches, max_drop, run_once, progress, runs
            )
            extra["search"] = search
            facts["nodes_excluded"] = list(cfg.exclude_nodes)
            # The sidecar says plainly whether this file met the target or is only the best found.
            facts["max_drop_search"] = {"target": max_drop, "met": search["met"], "best_drop": search["best_drop"]}
        progress.stage("comparing with the float parent")
        comparison = None
        if compare_data is not None:
            comparison = compare_models(model, [tmp], eval_data or calib or "", data=compare_data, runs=runs)
    if comparison is not None:
        comparison.rows[1].model = str(output)
    step = Step("quantize", cfg.to_dict() | facts, _summary(comparison))
    art = parent.derive(output, step)
    art.save()
    if comparison is not None and comparison.rows[1].slower:
        log.warning(
            f"SLOWER: {output.name} runs {1 / comparison.rows[1].speedup:.2f}x the latency of its float parent "
            f"on this machine at batch {comparison.batch_shape} (p50, interleaved). At that batch, on this CPU, "
            "the float model is the faster choice; other batch sizes can differ (edgeinfer bench --shape batch=N)."
        )
    return art, {"comparison": comparison, **extra}


def _check_device_precision(method: str, profile) -> None:
    """Say so when the device profile does not list the precision a method produces as fast there."""
    from edgeinfer.compress.onnx_quant import methods

    known = methods().get(method.lower())
    if profile is None or known is None:
        return
    precision = known.precision
    fast = [p.value for p in profile.precisions]
    if precision not in fast:
        log.warning(
            f"device {profile.name} lists {', '.join(fast)} as its fast precisions, not {precision}: {option('method', method)} "
            "may run slower there than the float model"
        )


def _summary(comparison: ComparisonReport | None) -> dict[str, Any]:
    if comparison is None:
        return {}
    base, cand = comparison.rows
    return {
        "task": comparison.task,
        "samples": comparison.samples,
        "baseline_metrics": base.metrics,
        "metrics": cand.metrics,
        "speedup_vs_parent": cand.speedup,
        "delta": cand.delta,
    }


def _search_exclusions(model, best_path: Path, cfg, sqnr, eval_batches, max_drop, run_once, progress, runs):
    """Greedy: keep the noisiest activations' nodes in float, one more at a time, until within budget."""
    import shutil

    from edgeinfer.pipelines.compare import compare_models, metric_drop

    def drop_of(path) -> float:
        rep = compare_models(model, [path], "eval", data=eval_batches, runs=3)
        row = rep.rows[1]
        return metric_drop(row.metrics, row.delta)

    steps = [{"excluded": [], "drop": drop_of(best_path)}]
    best = (steps[0]["drop"], cfg)
    candidates = [r["node"] for r in sqnr if r["node"]]
    seen: list[str] = list(cfg.exclude_nodes)
    with scratch_dir("search") as tmp:
        trial = Path(tmp) / "trial.onnx"
        for node in candidates:
            if best[0] <= max_drop or len(steps) > 12:
                break
            if node in seen:
                continue
            seen.append(node)
            trial_cfg = replace(cfg, exclude_nodes=tuple(seen))
            progress.stage(f"{option('max_drop')} search: keeping {len(seen)} node(s) in float")
            run_once(trial_cfg, trial)
            drop = drop_of(trial)
            steps.append({"excluded": list(seen), "added": node, "drop": drop, "bought": steps[-1]["drop"] - drop})
            if drop < best[0]:
                best = (drop, trial_cfg)
                shutil.copy(trial, best_path)
    return best[1], {"max_drop": max_drop, "met": best[0] <= max_drop, "best_drop": best[0], "steps": steps}
