"""`edgeinfer export`: load a source, export it, validate it against the source, record it.

The file only appears at the output path once validation passed; the figures go into the sidecar.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgeinfer.core.artifact import Artifact, ModelFormat, Step, new_artifact
from edgeinfer.core.errors import ConfigError, InputError, option
from edgeinfer.core.io import atomic_path, check_output
from edgeinfer.core.progress import QUIET, Progress

if TYPE_CHECKING:
    from edgeinfer.exporters.gguf import GgufExportConfig
    from edgeinfer.exporters.onnx import OnnxExportConfig

log = logging.getLogger(__name__)


def export_model(
    source: str,
    output: Path,
    *,
    task: str | None = None,
    opset: int | None = None,
    exporter: str = "auto",
    static_shapes: bool = False,
    atol: float | None = None,
    format: str | None = None,
    outtype: str | None = None,
    adapter: str | None = None,
    check_tokens: int = 256,
    allow_new_head: bool = False,
    image_size: str | None = None,
    allow_constant_outputs: bool = False,
    force: bool = False,
    trust_source: bool = False,
    profile=None,
    progress: Progress = QUIET,
) -> Artifact:
    """Export `source` (a Hugging Face folder, a factory spec or a .pt2) to ONNX or GGUF, chosen by the
    output's suffix, validated against the source before the file appears.

    Args:
        source, output: what to export, and where (.onnx or .gguf).
        task, opset, exporter, static_shapes, atol, allow_new_head, image_size ("224" or "224x320"),
            allow_constant_outputs: ONNX options (see `edgeinfer export --help`).
        outtype, adapter, check_tokens: GGUF options.
        profile: a device profile; one with `static_shapes = true` (NPUs) fixes every input shape.
        force: overwrite an existing output; trust_source: allow a .pt2 holding pickled objects.
    """
    from edgeinfer.core.errors import parse_choice
    from edgeinfer.exporters.gguf import GgufExportConfig
    from edgeinfer.exporters.onnx import DEFAULT_OPSET, OnnxExportConfig

    output = Path(output)
    fmt = ModelFormat.of(output)
    if format and parse_choice(ModelFormat, format, "format") is not fmt:
        raise ConfigError(
            f"{option('format', format)} but the output {output.name} is a .{fmt.value} file; name the output .{format}"
        )
    config: OnnxExportConfig | GgufExportConfig
    if fmt is ModelFormat.GGUF:
        onnx_only = (task, opset, static_shapes, atol is not None, exporter != "auto", allow_new_head, image_size)
        if any(onnx_only) or allow_constant_outputs:
            raise ConfigError(
                f"{', '.join(option(o) for o in ('task', 'opset', 'exporter', 'static_shapes'))} and "
                f"{option('atol')} are ONNX options; a GGUF export takes {option('outtype')}, {option('adapter')} "
                f"and {option('check_tokens')}"
            )
        config = GgufExportConfig(outtype or "f16", adapter, check_tokens)  # type: ignore[arg-type]
    else:
        if outtype or adapter:
            raise ConfigError(f"{option('outtype')} and {option('adapter')} are GGUF options; name the output .gguf")
        config = OnnxExportConfig(
            opset or DEFAULT_OPSET,
            exporter,  # type: ignore[arg-type]  (PassConfig coerces the string)
            static_shapes,
            atol,
            task,
            allow_new_head,
            parse_image_size(image_size),
            allow_constant_outputs,
        )
    return export(source, output, config, force=force, trust_source=trust_source, profile=profile, progress=progress)


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """'224' -> (224, 224); '224x320' -> (224, 320) (height x width)."""
    if text is None:
        return None
    parts = str(text).lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"{option('image_size', text)}: give N or HxW in pixels, e.g. 224 or 224x320")
    h, w = int(parts[0]), int(parts[-1])
    return h, w


def export(
    source: str,
    output: Path,
    config: OnnxExportConfig | GgufExportConfig,
    *,
    force: bool = False,
    trust_source: bool = False,
    profile=None,
    progress: Progress = QUIET,
) -> Artifact:
    """Export `source` with `config`: an OnnxExportConfig writes a validated .onnx, a GgufExportConfig
    a self-checked .gguf (the output's suffix must agree).

    Args:
        source: a Hugging Face folder, `package.module:function` (runs that code) or a .pt2.
        output: the file to write; it appears only once validation passed.
        config: the export pass's config.
        force: overwrite an existing output; trust_source: allow a .pt2 holding pickled objects.
        profile: a device profile; one with `static_shapes = true` (NPUs) fixes every input shape.
        progress: told each stage (edgeinfer.core.progress).
    """
    from edgeinfer.exporters.gguf import GgufExportConfig

    output = Path(output)
    fmt = ModelFormat.of(output)
    wanted = ModelFormat.GGUF if isinstance(config, GgufExportConfig) else ModelFormat.ONNX
    if fmt is not wanted:
        raise ConfigError(f"a {type(config).__name__} writes .{wanted.value}; name the output .{wanted.value}")
    if isinstance(config, GgufExportConfig):
        from edgeinfer.pipelines.export_gguf import export_gguf

        return export_gguf(source, output, config, force=force, progress=progress)
    if profile is not None and profile.static_shapes and not config.static_shapes:
        log.info(f"fixing every input shape: device {profile.name} needs static shapes")
        config = replace(config, static_shapes=True)
    check_output(output, [Path(source)], force)
    from edgeinfer.exporters.source import load_source

    progress.stage(f"loading {source}")
    from edgeinfer.exporters.diffusion import is_diffusers_folder, load_diffusers

    if Path(source).is_dir() and is_diffusers_folder(Path(source)):
        src = load_diffusers(Path(source))
    else:
        from edgeinfer.exporters.tasks import InputOptions

        options = InputOptions(config.image_size)
        src = load_source(source, config.task, trust_source, config.allow_new_head, options)
    return export_source(src, output, config, progress=progress, force=force)


def _opset_of(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def export_source(
    src,
    output: Path,
    cfg,
    *,
    steps: tuple = (),
    progress: Progress = QUIET,
    postprocess: Callable[[Path], Any] | None = None,
    force: bool = False,
) -> Artifact:
    """Export a loaded SourceModel to ONNX, validate it, and write the sidecar (with `steps`, the
    compression that produced the module, after the export step). `postprocess` rewrites the
    exported graph before validation, so what is validated is what ships."""
    from edgeinfer.exporters.onnx import export_onnx
    from edgeinfer.exporters.validate import validate_onnx
    from edgeinfer.pipelines.target import onnx_runner

    static_shapes, atol = cfg.static_shapes, cfg.atol
    cases = {"example": src.example}
    if not static_shapes:
        cases["second_shape"] = src.second
    with atomic_path(output, overwrite=force) as tmp:
        progress.stage(f"exporting to ONNX (opset {cfg.opset})")
        result = export_onnx(src, tmp, cfg)
        written = _opset_of(tmp)
        if written != cfg.opset:
            raise ConfigError(
                f"opset {cfg.opset} was asked for, but the {result.exporter.value} exporter wrote opset "
                f"{written}; the torch.export exporter writes opset 18 and above, {option('exporter')} "
                "torchscript 7 to 20"
            )
        if postprocess is not None:
            postprocess(tmp)
        progress.stage(
            "validating against PyTorch on "
            + " and ".join(", ".join(f"{n}{list(t.shape)}" for n, t in c.items()) for c in cases.values())
        )
        # A graph that exports but computes different numbers is refused, never shipped.
        runner = onnx_runner(tmp, profile_first_run=False)  # the CPU, through the runtime interface
        try:
            figures = validate_onnx(src.module, runner, cases, src.output_names, atol).to_dict()
        finally:
            runner.close()
        constant = figures["constant_outputs"]
        if constant and not getattr(cfg, "allow_constant_outputs", False):
            raise InputError(
                f"outputs are constant: the check proves nothing; PyTorch gives {', '.join(constant)} as one value "
                "everywhere on every validation input (all zeros: an untrained or zero-initialised head?), so the "
                f"export matching it says nothing about the graph. Train the head, or pass "
                f"{option('allow_constant_outputs', True)} to export it anyway (recorded in the sidecar)"
            )
        if constant:
            log.warning(
                f"not checked: PyTorch gives {', '.join(constant)} as one value everywhere on every validation "
                "input, so matching it proves nothing about the export; the min cosine counts the outputs that vary"
            )
    params = sum(p.numel() for p in src.module.parameters())
    config: dict[str, Any] = {**cfg.to_dict(), "exporter_used": result.exporter.value}
    if result.choice:
        config["exporter_choice"] = f"TorchScript first: {result.choice}"
    if result.fallback_reason:
        failed = "TorchScript" if result.exporter.value == "dynamo" else "torch.export"
        config["fallback"] = f"{failed} failed, {result.exporter.value} used: {result.fallback_reason}"
    meta = {
        "task": src.task,
        "inputs": src.input_names,
        "outputs": src.output_names,
        "dynamic_axes": {k: {str(a): d for a, d in v.items()} for k, v in src.dynamic_axes.items()}
        if not static_shapes
        else {},
        "parameters": params,
        "opset": cfg.opset,
    }
    if src.tokenizer_dir:
        meta["tokenizer"] = src.tokenizer_dir
    meta.update(src.meta)
    if src.task is None and src.description.get("kind") != "huggingface":
        meta.pop("task")
    art = new_artifact(output, src.description, Step("export", config, figures), meta)
    art.steps.extend(steps)
    art.save()
    return art
