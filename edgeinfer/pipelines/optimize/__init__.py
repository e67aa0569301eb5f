"""`edgeinfer optimize`: candidates from the device profile and the model, every one measured on
the user's data against the baseline (task metric, interleaved latency with a 95% interval, size,
peak memory), the fastest (or smallest) within the budgets chosen, and written as a deploy bundle.

Two kinds of model share the search (search.py): ONNX (sources that `export` takes, or an .onnx
file; onnx.py) and GGUF LLMs (a .gguf or a Hugging Face causal LM; llm.py). Each
candidate is a recipe, a list of registered passes with their configs, so the chosen one is
replayable (`recipe.toml`). Measurements are cached by (input sha256, recipe, data, machine):
an interrupted or repeated run resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from edgeinfer.core.errors import ConfigError, option
from edgeinfer.core.model_kind import ModelKind, model_kind
from edgeinfer.core.progress import QUIET, Progress
from edgeinfer.pipelines.optimize.search import (
    REPLAY_TOLERANCE,
    Budgets,
    Candidate,
    Objective,
    OptimizeReport,
    SearchSettings,
)

__all__ = ["REPLAY_TOLERANCE", "Budgets", "Candidate", "Objective", "OptimizeReport", "optimize", "source_kind"]


def optimize(
    source: str,
    bundle: Path,
    *,
    data: str | None = None,
    profile=None,
    budgets: Budgets = Budgets(),
    objective: Objective = Objective.LATENCY,
    calib: str | None = None,
    train_data: str | None = None,
    runs: int = 20,
    keep_best: bool = False,
    recipe: Path | None = None,
    html: Path | None = None,
    trust_source: bool = False,
    use_cache: bool = True,
    executor: str = "serial",
    ray_address: str | None = None,
    remote_python: str = "python3",
    ray_resource: str | None = None,
    force: bool = False,
    progress: Progress = QUIET,
) -> OptimizeReport:
    """Search the candidates for `profile` within `budgets` and write the chosen one as a bundle.

    Args:
        source: anything `export` takes, or an .onnx file (its sidecar names the task and
            tokenizer); a .gguf or a Hugging Face causal LM folder takes the LLM path.
        bundle: the folder to write (refused when it exists, unless force).
        data: evaluation data (as for compare: an .npz with labels, a .txt of sentences, ...); for
            LLMs the text scored (default: the sentences that ship with edgeinfer).
        profile: the device profile (precisions, providers, threads, memory, static shapes).
        budgets, objective: what the chosen model must meet, and what to minimise among those that
            do; budgets.max_memory_mb defaults to the profile's memory_mb.
        calib: calibration data for static INT8 (default: the evaluation data); for an LLM, a text
            the importance-aware GGUF types are calibrated on (tried beside the plain ones).
        train_data: `package.module:function` giving (train, eval) DataLoaders, or an .npz: adds
            structured pruning + fine-tuning candidates (the source must be a PyTorch factory).
        runs: interleaved timing runs; keep_best: write the closest candidate's bundle when none meets.
        recipe: a bundle's recipe.toml to replay instead of searching (refused for another source);
            the result is checked: identical bytes, or a metric drop within REPLAY_TOLERANCE of the recorded.
        html: also write an HTML report: every candidate's row and the metric-against-latency plot.
        use_cache: reuse measurements from earlier runs (they are stored either way).
        executor, ray_address: "serial" (in this process), or "ray": candidates as Ray tasks on a
            local instance or the cluster at ray_address; the chosen one is measured again here; or
            "ssh://[USER@]HOST[:PORT]": ONNX candidates built here and measured on that device, with
            `remote_python` there (onnxruntime and numpy), the figures final (remote.SshDevice).
        ray_resource: with "ray", a custom resource only the device's node declares: every task runs
            there, one at a time, and its figures are final (not measured again here).
        trust_source, force, progress: as elsewhere.

    Returns the OptimizeReport; the bundle exists only when a candidate met the budgets (or keep_best).
    """
    from edgeinfer.core.measure import apply_measurement_env

    apply_measurement_env()  # before torch or llama.cpp loads: OpenMP reads it once
    from dataclasses import replace

    from edgeinfer.core.errors import parse_choice
    from edgeinfer.core.io import output_lock
    from edgeinfer.pipelines.deploy.bundle import check_bundle_output
    from edgeinfer.pipelines.optimize.executors import Executor, make_executor

    check_bundle_output(Path(bundle), force)  # early, before any work; again under the lock below
    memory_mb = getattr(profile, "memory_mb", None)
    if budgets.max_memory_mb is None and memory_mb:
        budgets = replace(budgets, max_memory_mb=float(memory_mb))
    kind = source_kind(source)
    budgets.for_kind(kind)
    device_host = None
    if executor.startswith("ssh://"):
        from edgeinfer.pipelines.optimize.remote import SshDevice

        device_host = SshDevice.parse(executor, remote_python)
        if kind is ModelKind.GGUF:
            raise ConfigError(
                f"{option('executor', executor)} measures ONNX candidates on the device; GGUF LLMs are measured "
                "here (llama-cpp-python builds from source on a board: run optimize there)"
            )
        if ray_address or ray_resource:
            raise ConfigError(
                f"{option('ray_address' if ray_address else 'ray_resource')} needs {option('executor', 'ray')}"
            )
        executor = "serial"
    elif remote_python != "python3":
        raise ConfigError(f"{option('remote_python')} needs {option('executor', 'ssh://HOST')}")
    how = parse_choice(Executor, executor, "executor")
    if kind is ModelKind.GGUF and train_data is not None:
        raise ConfigError(f"{option('train_data')} is for ONNX models, not LLMs")
    if kind is ModelKind.GGUF and calib is not None and how is not Executor.SERIAL:
        raise ConfigError(f"{option('calib')} for an LLM (importance-aware types) runs with the serial executor")
    if kind is ModelKind.ONNX and data is None:
        raise ConfigError(f"optimizing an ONNX model needs evaluation data: pass {option('data')}")
    # The bundle path is locked for the whole search: a second run started with the same -o is
    # refused at once (exit 2) instead of measuring for minutes and then replacing the first's bundle.
    Path(bundle).parent.mkdir(parents=True, exist_ok=True)
    with output_lock(Path(bundle)):
        check_bundle_output(Path(bundle), force)
        runner = make_executor(how, ray_address, ray_resource)
        if device_host is not None:
            progress.stage(f"reaching {device_host.destination} over ssh")
            device_host.probe()
        settings = SearchSettings(
            profile, budgets, objective, runs, keep_best, recipe, html, trust_source, use_cache, force, runner, progress,
            device_host=device_host,
        )  # fmt: skip
        try:
            if kind is ModelKind.GGUF:
                from edgeinfer.pipelines.optimize.llm import optimize_llm

                return optimize_llm(source, Path(bundle), text=data, calib=calib, settings=settings)
            from edgeinfer.pipelines.optimize.onnx import optimize_onnx

            assert data is not None
            return optimize_onnx(source, Path(bundle), data=data, calib=calib, train_data=train_data, settings=settings)
        finally:
            if runner is not None:
                runner.close()


def source_kind(source: str) -> ModelKind:
    """What the search produces from `source`: GGUF for a .gguf file or a Hugging Face causal LM
    folder, else ONNX."""
    path = Path(source)
    if model_kind(path) is ModelKind.GGUF:
        return ModelKind.GGUF
    if path.is_dir() and (path / "config.json").is_file():
        from edgeinfer.core.hf_folder import read_config

        archs = read_config(path).get("architectures") or []
        if any(a.endswith("ForCausalLM") for a in archs):
            return ModelKind.GGUF
    return ModelKind.ONNX
