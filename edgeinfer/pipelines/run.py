"""`edgeinfer run` and `edgeinfer compile` for ONNX models: one inference, or an EP-context build."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.artifact import Artifact, Step, load_artifact
from edgeinfer.core.errors import ConfigError
from edgeinfer.core.io import atomic_path, check_output, require_file

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Outputs of one inference and the providers that really ran it."""

    outputs: dict[str, np.ndarray]
    providers: dict[str, Any] = field(default_factory=dict)
    written: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"outputs": {k: list(v.shape) for k, v in self.outputs.items()}, "providers": self.providers}


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
    """Run `model` once on the arrays of the .npz `inputs`; optionally write the outputs to an .npz.

    Args:
        model: an .onnx file.
        inputs: an .npz whose arrays are named like the model's inputs (a `labels` array is ignored).
        output: where to write the outputs (.npz), refused if it exists unless `force`.
        profile: a DeviceProfile whose providers and threads are used unless given explicitly.
        providers, threads, allow_fallback: as for OrtRunner.
    """
    from edgeinfer.core.formats import load_npz
    from edgeinfer.pipelines.target import ort_target
    from edgeinfer.runtime.ort import OrtRunner

    require_file(model, "model")
    require_file(inputs, "input file")
    if output is not None:
        check_output(output, [model, inputs], force)
    feeds = load_npz(inputs, "input file")
    target = ort_target(profile, providers, threads)
    runner = OrtRunner(model, providers=target.providers, threads=target.threads, allow_fallback=allow_fallback)
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


def compile_model(model: Path, output: Path, profile, *, force: bool = False) -> Artifact:
    """Precompile `model` for the profile's first provider into an EP-context model (`*_ctx.onnx`)."""
    from edgeinfer.pipelines.target import ort_target
    from edgeinfer.runtime.ort import compile_ep_context

    if profile is None:
        raise ConfigError("compiling needs a device profile whose provider compiles the model")
    check_output(output, [model], force)
    parent = load_artifact(model)
    target = ort_target(profile)
    with atomic_path(output, overwrite=force) as tmp:
        report = compile_ep_context(model, tmp, target.providers or [], target.threads)
    art = parent.derive(output, Step("compile", {"device": profile.name, "providers": report.used}))
    art.save()
    return art
