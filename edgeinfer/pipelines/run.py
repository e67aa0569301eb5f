"""`edgeinfer run` for every kind of model (one inference of an ONNX model, or a generation from an
LLM or encoder-decoder), and `edgeinfer compile` (an EP-context build). The model is loaded through
edgeinfer.runtime.load; what to do with it follows from what its runner does, not from its file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.artifact import Artifact, Step, load_artifact
from edgeinfer.core.errors import ConfigError, option, refuse_options
from edgeinfer.core.io import atomic_path, check_output, require_file
from edgeinfer.runtime import GenerationStats, Target

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Outputs of one inference and the providers that really ran it."""

    outputs: dict[str, np.ndarray]
    providers: dict[str, Any] = field(default_factory=dict)
    written: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"outputs": {k: list(v.shape) for k, v in self.outputs.items()}, "providers": self.providers}


@dataclass
class Generation:
    """One generation: its text and speeds (runtime.GenerationStats), and whether `max_tokens` cut it."""

    stats: GenerationStats
    max_tokens: int
    backend: list[str]

    @property
    def cut(self) -> bool:
        return self.stats.generated_tokens + 1 >= self.max_tokens

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "text": s.text,
            "prompt_tokens": s.prompt_tokens,
            "generated_tokens": s.generated_tokens,
            "prompt_tokens_per_s": s.prompt_tps,
            "generation_tokens_per_s": s.generate_tps,
            "backend": self.backend,
            **s.extra,  # a backend's own keys (an encoder-decoder's token ids and providers)
        }


def run_model(
    model: Path,
    target: Target = Target(),
    *,
    profile=None,
    inputs: Path | None = None,
    output: Path | None = None,
    prompt: str | None = None,
    audio: Path | None = None,
    max_tokens: int = 128,
    force: bool = False,
    on_text: Callable[[str], None] | None = None,
) -> RunResult | Generation:
    """Run any model once: an ONNX model on the arrays of `inputs` (written to `output`), a text
    generator (GGUF, GenAI folder, encoder-decoder) on `prompt` (a speech model on `audio`, a WAV),
    each piece passed to `on_text` as it comes.

    Args:
        target: the user's options (runtime.Target); profile: a device profile filling the rest.
            An option the model's runtime would ignore is refused.
    """
    from edgeinfer.core.model_kind import model_kind
    from edgeinfer.pipelines.target import resolve_target
    from edgeinfer.runtime import backend_for, load

    kind = model_kind(model)
    target = resolve_target(model, profile, target)
    if not backend_for(kind, target.backend).generates:
        refuse_options({"prompt": prompt, "audio": audio}, "LLMs and encoder-decoder folders", kind.one)
        if inputs is None:
            raise ConfigError(f"{option('inputs')} is required for ONNX models (an .npz of named arrays)")
        return _run_tensors(model, target, inputs, output, force)
    refuse_options({"inputs": inputs, "output": output}, "ONNX models", kind.one)
    runner: Any = load(model, target)
    try:
        source: Any = _generation_source(runner, kind.one, prompt, audio)
        stats = None
        for piece in runner.stream(source, max_tokens=max_tokens):
            if isinstance(piece, GenerationStats):
                stats = piece
            elif on_text is not None:
                on_text(piece)
        if stats is None:  # every runner ends its stream with the stats
            raise RuntimeError("the generation stream ended without its statistics")
        return Generation(stats, max_tokens, list(runner.report.used))
    finally:
        runner.close()


def _generation_source(runner, what: str, prompt: str | None, audio: Path | None):
    """The prompt, or for a speech model the WAV's samples at its feature extractor's rate."""
    extractor = getattr(runner, "feature_extractor", None)
    if extractor is not None:
        from edgeinfer.core.audio import read_wav

        if audio is None or prompt is not None:
            raise ConfigError(
                f"a speech model transcribes audio: give {option('audio')} FILE.wav (and no {option('prompt')})"
            )
        return read_wav(require_file(audio, "WAV file"), int(extractor.sampling_rate))
    refuse_options({"audio": audio}, "speech models", what)
    if not prompt:
        raise ConfigError(
            f"{what} needs {option('prompt')} TEXT" + (" (or use `edgeinfer chat`)" if "GGUF" in what else "")
        )
    return prompt


def _run_tensors(model: Path, target: Target, inputs: Path, output: Path | None, force: bool) -> RunResult:
    from edgeinfer.core.formats import load_npz
    from edgeinfer.runtime import load

    require_file(model, "model")
    require_file(inputs, "input file")
    if output is not None:
        check_output(output, [model, inputs], force)
    feeds = load_npz(inputs, "input file")
    runner: Any = load(model, target)
    if "labels" not in {i.name for i in runner.inputs}:
        feeds.pop("labels", None)  # evaluation files carry labels beside the inputs
    outputs = runner.run(feeds)
    if output is not None:
        with atomic_path(output, overwrite=force) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **outputs)  # pyright: ignore[reportArgumentType]  # names are keys, not options
    rep = runner.report
    return RunResult(
        outputs,
        {"requested": rep.requested, "used": rep.used, "fallbacks": rep.fallbacks, "placement": rep.placement},
        output,
    )


def run_onnx(
    model: Path,
    inputs: Path,
    output: Path | None = None,
    *,
    profile=None,
    providers=None,
    threads: int | None = None,
    allow_fallback: bool = False,
    force: bool = False,
) -> RunResult:
    """Run the ONNX `model` once on the arrays of the .npz `inputs` (run_model for one ONNX model).

    Args:
        output: where to write the outputs (.npz), refused if it exists unless `force`.
        profile: a DeviceProfile whose providers and threads are used unless given explicitly.
        providers, threads, allow_fallback: as for OrtRunner.
    """
    target = Target(tuple(providers) if providers else None, threads, allow_fallback)
    result = run_model(model, target, profile=profile, inputs=inputs, output=output, force=force)
    assert isinstance(result, RunResult)
    return result


def compile_model(model: Path, output: Path, profile, *, force: bool = False) -> Artifact:
    """Precompile `model` for the profile's first provider into an EP-context model (`*_ctx.onnx`)."""
    from edgeinfer.pipelines.target import onnx_target
    from edgeinfer.runtime.ort import compile_ep_context

    if profile is None:
        raise ConfigError("compiling needs a device profile whose provider compiles the model")
    check_output(output, [model], force)
    parent = load_artifact(model)
    target = onnx_target(profile)
    with atomic_path(output, overwrite=force) as tmp:
        report = compile_ep_context(model, tmp, target.providers or [], target.threads)
    art = parent.derive(output, Step("compile", {"device": profile.name, "providers": report.used}))
    art.save()
    return art
