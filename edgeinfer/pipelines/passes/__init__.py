"""Passes: every technique as a named step from one model to another, with a typed config.

A pass is one file here registering a `Pass`: its name, its config class (a frozen
`edgeinfer.core.config.PassConfig` that validates itself and round-trips through a plain dict),
what it takes, what it gives, and `run(input, output, config, ctx) -> Artifact`. A recipe is a
list of (pass name, config dict); `run_recipe` runs one, so a recipe written to a file (the
sidecars record each step's config under "pass") can be replayed. `edgeinfer passes` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import ConfigError
from edgeinfer.core.io import scratch_dir
from edgeinfer.core.progress import QUIET, Progress
from edgeinfer.core.registry import Registry


class Takes(StrEnum):
    """What a pass starts from."""

    SOURCE = "source"  # what `export` takes: a Hugging Face folder, a factory, a .pt2
    FACTORY = "factory"  # a PyTorch factory, `package.module:function` (training passes)
    HF_CAUSAL_LM = "hf-causal-lm"  # a Hugging Face causal LM folder
    ONNX = "onnx"
    GGUF = "gguf"

    @property
    def pytorch(self) -> bool:
        return self in (Takes.SOURCE, Takes.FACTORY, Takes.HF_CAUSAL_LM)


@dataclass(frozen=True)
class PassContext:
    """What a pass may need beside its input and config.

    Args:
        calib: calibration data (static quantization); eval_data: data the result is compared on.
        train_data: `package.module:function` giving (train, eval) DataLoaders, or an .npz (training passes).
        profile: a device profile; trust_source: run factories named by files, load pickled .pt2.
        runs: interleaved timing runs of the comparisons; compare: let passes compare their output
            with their input (off when the caller measures every result itself, as optimize does).
        force: overwrite existing outputs.
        progress: told each stage (edgeinfer.core.progress).
    """

    calib: str | None = None
    eval_data: str | None = None
    train_data: str | None = None
    profile: Any = None
    trust_source: bool = False
    runs: int = 20
    compare: bool = True
    force: bool = False
    progress: Progress = field(default=QUIET, compare=False)


@dataclass(frozen=True)
class Pass:
    """A registered technique.

    Args:
        name: how recipes and `edgeinfer passes` name it.
        config: its PassConfig class.
        takes: what the input is: "source" (a Hugging Face folder, a factory, a .pt2), "factory"
            (`package.module:function`), "hf-causal-lm" (a Hugging Face folder), "onnx" or "gguf".
        gives: the format it writes.
        run: (input, output, config, ctx) -> the output's Artifact.
        summary: one line for `edgeinfer passes`.
    """

    name: str
    config: type[PassConfig]
    takes: Takes
    gives: ModelFormat
    run: Callable[[str, Path, Any, PassContext], Artifact]
    summary: str


_PASSES: Registry[Pass] = Registry("pass", __name__)


def register_pass(p: Pass) -> Pass:
    """Add `p` to the registry (each pass file calls this once, on import)."""
    _PASSES.add(p.name, p)
    return p


def passes() -> dict[str, Pass]:
    """Every registered pass by name."""
    return _PASSES.all()


def get_pass(name: str) -> Pass:
    """The pass called `name`; an unknown name fails listing the registered ones."""
    known = passes()
    if name not in known:
        raise ConfigError(f"unknown pass {name!r} (valid: {', '.join(sorted(known))})")
    return known[name]


def make_config(name: str, config: PassConfig | dict[str, Any] | None) -> PassConfig:
    """The pass's config from a config object of its class, a plain dict, or None (its defaults)."""
    p = get_pass(name)
    if isinstance(config, p.config):
        return config
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"pass {name} takes a {p.config.__name__}, not a {type(config).__name__}")
    return p.config.from_dict(config or {})


def run_pass(
    name: str,
    source: str | Path,
    output: Path,
    config: PassConfig | dict[str, Any] | None = None,
    ctx: PassContext = PassContext(),
) -> Artifact:
    """Run one pass: `source` -> `output` with `config` (its config class, a dict, or None for defaults)."""
    p = get_pass(name)
    cfg = make_config(name, config)
    _check_input(p, str(source))
    return p.run(str(source), Path(output), cfg, ctx)


def run_recipe(
    source: str | Path,
    output: Path,
    steps: Sequence[tuple[str, PassConfig | dict[str, Any] | None]],
    ctx: PassContext = PassContext(),
) -> Artifact:
    """Run passes in order, each on the previous one's output; intermediate files live in a
    temporary folder and only the last step writes `output`."""
    if not steps:
        raise ConfigError("a recipe needs at least one pass")
    configs = [(get_pass(name), make_config(name, cfg)) for name, cfg in steps]  # all checked before any runs
    current = str(source)
    with scratch_dir("recipe") as tmp:
        for i, (p, cfg) in enumerate(configs):
            last = i == len(configs) - 1
            out = Path(output) if last else Path(tmp) / f"step{i}-{p.name}.{p.gives.value}"
            _check_input(p, current)
            ctx.progress.stage(f"pass {i + 1}/{len(configs)}: {p.name}")
            art = p.run(current, out, cfg, ctx)
            current = str(art.path)
        return art


def _check_input(p: Pass, source: str) -> None:
    suffix = Path(source).suffix.lower()
    wanted = {Takes.ONNX: ".onnx", Takes.GGUF: ".gguf"}.get(p.takes)
    if wanted and suffix != wanted:
        raise ConfigError(f"pass {p.name} takes a {wanted} model, not {Path(source).name}")
    if p.takes.pytorch and suffix in (".onnx", ".gguf"):
        raise ConfigError(f"pass {p.name} takes a PyTorch source, not the exported {Path(source).name}")
