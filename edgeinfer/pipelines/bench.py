"""`edgeinfer bench`: latency percentiles, throughput, memory and providers for one model.

With a baseline source, eager PyTorch is timed on the same inputs, interleaved with ONNX Runtime.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeinfer.core.errors import ConfigError, InputError, option, refuse_options
from edgeinfer.core.limits import check_fits_in_memory, check_memory
from edgeinfer.core.measure import interleaved, peak_rss_mb, percentiles, speedup_ci
from edgeinfer.core.progress import QUIET, Progress
from edgeinfer.runtime import Target

# Symbolic dimension name -> default size for synthetic inputs.
DEFAULT_DIMS = {"batch": 1, "sequence": 128}
JSON_SCHEMA = 1

log = logging.getLogger(__name__)


def parse_shapes(items: list[str]) -> dict[str, list[int]]:
    """`name=1x128` -> {"name": [1, 128]}; a bare `batch=4` sets a symbolic dimension."""
    shapes = {}
    for item in items:
        m = re.fullmatch(r"([^=]+)=(\d+(?:x\d+)*)", item.strip())
        if not m:
            raise ConfigError(f"{option('shapes')} {item!r} must look like input_name=1x128 or batch=8")
        dims = [int(d) for d in m.group(2).split("x")]
        if any(d < 1 or d > 2**31 for d in dims):
            raise ConfigError(f"{option('shapes')} {item!r}: every dimension must be between 1 and 2^31")
        shapes[m.group(1)] = dims
    return shapes


def synthetic_inputs(inputs, shapes: dict[str, list[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs built from the graph's specs: symbolic dims from `shapes` or the defaults."""
    from edgeinfer.runtime.feeds import DTYPES as ORT_DTYPES

    rng = np.random.default_rng(seed)
    names = {spec.name for spec in inputs}
    unknown = [k for k, v in shapes.items() if k not in names and len(v) != 1]
    if unknown:
        raise ConfigError(
            f"{option('shapes')} {unknown[0]}: no such input; the model's inputs are {', '.join(sorted(names))}"
        )
    dims = {**DEFAULT_DIMS, **{k: v[0] for k, v in shapes.items() if k not in names}}
    feeds = {}
    total = 0
    for spec in inputs:
        if spec.name in shapes:
            shape = shapes[spec.name]
            if len(shape) != len(spec.shape):
                raise ConfigError(
                    f"{option('shapes')} {spec.name}: rank {len(shape)} does not match the model's {list(spec.shape)}"
                )
        else:
            shape = [d if isinstance(d, int) else dims.get(d, 1) for d in spec.shape]
        dtype = ORT_DTYPES.get(spec.type)
        if dtype is None:
            raise InputError(f"input {spec.name} has type {spec.type}, which bench cannot synthesize")
        if any(d <= 0 for d in shape):
            raise ConfigError(
                f"{option('shapes')}: input {spec.name} would have shape {shape}; every dimension must be >= 1"
            )
        total += int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
        check_fits_in_memory(total, f"inputs of shape {shape} for {spec.name}", f"Use a smaller {option('shapes')}.")
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif "mask" in spec.name or dtype == np.bool_:
            feeds[spec.name] = np.ones(shape, dtype=dtype)
        elif "type" in spec.name or "position" in spec.name:
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
        else:
            feeds[spec.name] = rng.integers(0, 1000, size=shape).astype(dtype)
    return feeds


def source_spec(source: dict[str, Any]) -> str | None:
    """The `export` SOURCE argument recorded in a sidecar, to rebuild the PyTorch model."""
    kind = source.get("kind")
    if kind == "factory":
        return source["factory"]
    if kind in ("huggingface", "pt2"):
        return source["path"]
    return None


@dataclass
class BaselineTiming:
    """Eager PyTorch timed on the same inputs, interleaved; speedup = PyTorch p50 / ONNX Runtime p50."""

    source: str
    latency_ms: dict[str, float]
    speedup: float
    speedup_ci95: tuple[float, float]
    runtime: str = "pytorch-eager"

    @property
    def slower(self) -> bool:
        """ONNX Runtime is slower than eager PyTorch: the whole 95% interval of the speedup is below 1."""
        return self.speedup_ci95[1] < 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "runtime": self.runtime,
            "latency_ms": self.latency_ms,
            "speedup": self.speedup,
            "speedup_ci95": list(self.speedup_ci95),
        }


@dataclass
class BenchReport:
    """What `edgeinfer bench` measured; to_dict() is its --json (schema 1)."""

    model: str
    file_size_bytes: int
    inputs: dict[str, list[int]]
    batch: int
    runs: int
    warmup: int
    latency_ms: dict[str, float]
    throughput_per_s: float
    peak_rss_mb: float
    providers: dict[str, Any]
    baseline: BaselineTiming | None = None
    # Eager PyTorch under torch.autocast("cpu", bfloat16), where the CPU has BF16 (AVX512-BF16,
    # AMX): what a PyTorch user of that CPU would run instead of FP32.
    baseline_bf16: BaselineTiming | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": JSON_SCHEMA}
        out.update({f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("baseline")})
        for name in ("baseline", "baseline_bf16"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name).to_dict()
        return out


def bench_model(
    model: Path,
    *,
    providers=None,
    device=None,
    allow_fallback: bool = False,
    threads: int | None = None,
    shapes: dict[str, list[int]] | None = None,
    runs: int = 50,
    warmup: int = 5,
    baseline: str | None = None,
    trust_source: bool = False,
    progress: Progress = QUIET,
) -> BenchReport:
    """Latency percentiles, throughput, peak memory and the providers really used, on synthetic inputs.

    Args:
        model: an .onnx file. providers, device, threads, allow_fallback: where it runs.
        shapes: input shapes (`{"input": [1, 128]}`) or symbolic dims (`{"batch": [8]}`).
        runs, warmup: timed and untimed runs.
        baseline: a PyTorch source timed interleaved on the same inputs ("auto": the sidecar's source);
            trust_source allows a factory named by the sidecar to run.
        tick: called after each timed run (progress).
    """
    from edgeinfer.core.measure import apply_measurement_env

    apply_measurement_env()  # before torch or llama.cpp loads: OpenMP reads it once
    from edgeinfer.core.artifact import load_artifact
    from edgeinfer.pipelines.target import onnx_runner, onnx_target

    art = load_artifact(model)
    runner = onnx_runner(model, onnx_target(device, providers, threads), allow_fallback=allow_fallback)
    feeds = synthetic_inputs(runner.inputs, shapes or {})
    runner.check_inputs(feeds)
    runner.run(feeds)  # profiled run: placement
    fns: dict[str, Callable[[], object]] = {"onnxruntime": runner.timer(feeds)}
    if baseline:
        fns["pytorch"], bf16 = _torch_fns(baseline, art, feeds, trust_source)
        if bf16 is not None:
            fns["pytorch-bf16"] = bf16
    times = interleaved(fns, runs=runs, warmup=warmup, progress=progress)
    batch = next(iter(feeds.values())).shape[0] if feeds else 1
    lat = percentiles(times["onnxruntime"])
    result = BenchReport(
        model=str(model),
        file_size_bytes=Path(model).stat().st_size,
        inputs={n: list(a.shape) for n, a in feeds.items()},
        batch=int(batch),
        runs=runs,
        warmup=warmup,
        latency_ms=lat,
        throughput_per_s=batch * 1000.0 / lat["p50"],
        peak_rss_mb=peak_rss_mb(),
        providers={
            "requested": runner.report.requested,
            "used": runner.report.used,
            "fallbacks": runner.report.fallbacks,
            "placement": runner.report.placement,
        },
    )
    check_memory(result.peak_rss_mb, device)
    if baseline:
        point, lo, hi = speedup_ci(times["pytorch"], times["onnxruntime"])
        result.baseline = BaselineTiming(baseline, percentiles(times["pytorch"]), point, (lo, hi))
    if "pytorch-bf16" in times:
        point, lo, hi = speedup_ci(times["pytorch-bf16"], times["onnxruntime"])
        result.baseline_bf16 = BaselineTiming(
            str(baseline), percentiles(times["pytorch-bf16"]), point, (lo, hi), "pytorch-eager-bf16-autocast"
        )
    return result


@dataclass
class LlmBenchReport:
    """What `edgeinfer bench` measured on an LLM (llama.cpp or ONNX Runtime GenAI): prompt (pp) and
    generation (tg) tokens per second with each run, the file's summary, and for llama.cpp the peak
    memory and the memory-bandwidth bound; to_dict() is its --json."""

    n_prompt: int
    n_gen: int
    figures: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.figures


def bench(
    model: Path,
    target: Target = Target(),
    *,
    profile=None,
    shapes: dict[str, list[int]] | None = None,
    runs: int | None = None,
    warmup: int = 5,
    baseline: str | None = None,
    trust_source: bool = False,
    n_prompt: int = 512,
    n_gen: int = 128,
    progress: Progress = QUIET,
) -> BenchReport | LlmBenchReport:
    """Benchmark any model edgeinfer runs: an ONNX model's latency (bench_model; `runs` default 50),
    or an LLM's pp / tg tokens per second (`runs` repetitions, default 3). `target` holds the
    user's options and `profile` the device's; options the model's runtime would ignore are refused."""
    from edgeinfer.core.model_kind import ModelKind, model_kind
    from edgeinfer.pipelines.target import resolve_target
    from edgeinfer.runtime import backend_for

    kind = model_kind(model)
    target = resolve_target(model, profile, target)
    if not backend_for(kind, target.backend).generates:
        return bench_model(
            model, providers=list(target.providers) if target.providers else None, device=profile,
            allow_fallback=target.allow_fallback, threads=target.threads, shapes=shapes, runs=runs or 50,
            warmup=warmup, baseline=baseline, trust_source=trust_source, progress=progress,
        )  # fmt: skip
    refuse_options(
        {"shape": shapes, "baseline": baseline, "trust_source": trust_source},
        "ONNX models",
        f"{kind.one} (it takes {option('n_prompt')} and {option('n_gen')})",
    )
    reps = runs or 3
    if kind is ModelKind.GGUF:
        from edgeinfer.pipelines.llm import bench_gguf
        from edgeinfer.runtime.llama import settings_from_target

        figures = bench_gguf(
            model, settings_from_target(target), n_prompt=n_prompt, n_gen=n_gen, reps=reps, profile=profile
        )
    elif kind is ModelKind.GENAI:
        from edgeinfer.runtime import load
        from edgeinfer.runtime.genai import genai_summary

        runner: Any = load(model, target, expect=ModelKind.GENAI)
        figures = {**genai_summary(model), **runner.bench(n_prompt, n_gen, reps), "backend": runner.report.used}
    else:
        raise ConfigError(f"bench times ONNX models and LLMs; for {kind.one} use `edgeinfer compare`")
    return LlmBenchReport(n_prompt, n_gen, figures)


def _torch_fns(baseline: str, art, feeds, trust_source: bool):
    """Eager PyTorch on `feeds`: FP32, and BF16 autocast where this CPU has BF16 (else None)."""
    import torch

    from edgeinfer.core.factory import require_trust
    from edgeinfer.devices import host_has_bf16
    from edgeinfer.exporters.source import load_source
    from edgeinfer.exporters.tasks import tasks

    spec = source_spec(art.source) if baseline == "auto" else baseline
    if not spec:
        raise ConfigError(f"{art.path} records no PyTorch source; pass {option('baseline', 'SOURCE')} explicitly")
    if baseline == "auto" and art.source.get("kind") == "factory":
        # The sidecar is data that travels with the model: the code it names runs only when trusted.
        require_trust(spec, f"the sidecar of {art.path.name}", trust_source)
    task = art.meta.get("task")
    if task is not None and task not in tasks():
        raise InputError(f"the sidecar of {art.path.name} records an unknown task {task!r}; re-export the model")
    log.info(f"loading the PyTorch baseline {spec} to time it beside ONNX Runtime")
    src = load_source(spec, task, trust_source=trust_source)
    missing = [n for n in src.input_names if n not in feeds]
    if missing:
        raise ConfigError(f"baseline {spec} takes inputs {src.input_names}, the ONNX model {list(feeds)}")
    args = tuple(torch.from_numpy(feeds[n]) for n in src.input_names)

    def run():
        with torch.inference_mode():
            src.module(*args)

    def run_bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            src.module(*args)

    return run, (run_bf16 if host_has_bf16() else None)
