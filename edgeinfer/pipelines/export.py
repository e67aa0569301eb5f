"""`edgeinfer export`: load a source, export it, validate it against the source, record it.

The file only appears at the output path once validation passed; the figures go into the sidecar.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from edgeinfer.core.artifact import Artifact, ModelFormat, Step, new_artifact
from edgeinfer.core.errors import ConfigError
from edgeinfer.core.io import atomic_path, check_output

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
    force: bool = False,
    trust_source: bool = False,
    profile=None,
    stage: Callable[[str], None] = lambda s: None,
    progress: Callable[[int, int, str], None] = lambda i, n, name: None,
) -> Artifact:
    """Export `source` (a Hugging Face folder, a factory spec or a .pt2) to ONNX or GGUF, chosen by the
    output's suffix, validated against the source before the file appears.

    Args:
        source, output: what to export, and where (.onnx or .gguf).
        task, opset, exporter, static_shapes, atol: ONNX options (see `edgeinfer export --help`).
        outtype, adapter, check_tokens: GGUF options.
        profile: a device profile; one with `static_shapes = true` (NPUs) fixes every input shape.
        force: overwrite an existing output; trust_source: allow a .pt2 holding pickled objects.
    """
    from edgeinfer.core.errors import parse_choice

    output = Path(output)
    if profile is not None and profile.static_shapes and not static_shapes and output.suffix.lower() == ".onnx":
        log.info(f"fixing every input shape: device {profile.name} needs static shapes")
        static_shapes = True
    fmt = ModelFormat.of(output)
    if format and parse_choice(ModelFormat, format, "format") is not fmt:
        raise ConfigError(
            f"--format {format} but the output {output.name} is a .{fmt.value} file; name the output .{format}"
        )
    if fmt is ModelFormat.GGUF:
        if task or opset or static_shapes or atol is not None or exporter != "auto":
            raise ConfigError(
                "--task, --opset, --exporter, --static-shapes and --atol are ONNX options; "
                "a GGUF export takes --outtype, --adapter and --check-tokens"
            )
        from edgeinfer.pipelines.export_gguf import export_gguf

        return export_gguf(
            source,
            output,
            outtype=outtype or "f16",
            adapter=adapter,
            check_tokens=check_tokens,
            force=force,
            stage=stage,
            progress=progress,
        )
    if outtype or adapter:
        raise ConfigError("--outtype and --adapter are GGUF options; name the output .gguf")
    check_output(output, [Path(source)], force)
    from edgeinfer.exporters.onnx import DEFAULT_OPSET, Exporter, OnnxExportConfig
    from edgeinfer.exporters.source import load_source

    if task:
        from edgeinfer.exporters.tasks import get_task

        get_task(task)  # an unknown task fails here, listing the registered ones
    cfg = OnnxExportConfig(
        opset=opset or DEFAULT_OPSET,
        exporter=parse_choice(Exporter, exporter, "exporter"),
        static_shapes=static_shapes,
        atol=atol,
    )
    stage(f"loading {source}")
    return export_source(load_source(source, task, trust_source), output, cfg, stage=stage, force=force)


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
    stage: Callable[[str], None] = lambda s: None,
    postprocess: Callable[[Path], Any] | None = None,
    force: bool = False,
) -> Artifact:
    """Export a loaded SourceModel to ONNX, validate it, and write the sidecar (with `steps`, the
    compression that produced the module, after the export step). `postprocess` rewrites the
    exported graph before validation, so what is validated is what ships."""
    from edgeinfer.exporters.onnx import export_onnx
    from edgeinfer.exporters.validate import validate_onnx

    static_shapes, atol = cfg.static_shapes, cfg.atol
    cases = {"example": src.example}
    if not static_shapes:
        cases["second_shape"] = src.second
    with atomic_path(output, overwrite=force) as tmp:
        stage(f"exporting to ONNX (opset {cfg.opset})")
        result = export_onnx(src, tmp, cfg)
        written = _opset_of(tmp)
        if written != cfg.opset:
            raise ConfigError(
                f"opset {cfg.opset} was asked for, but the {result.exporter.value} exporter wrote opset "
                f"{written}; the torch.export exporter writes opset 18 and above, --exporter "
                "torchscript 7 to 20"
            )
        if postprocess is not None:
            postprocess(tmp)
        stage(
            "validating against PyTorch on "
            + " and ".join(", ".join(f"{n}{list(t.shape)}" for n, t in c.items()) for c in cases.values())
        )
        # A graph that exports but computes different numbers is refused, never shipped.
        figures = validate_onnx(src.module, tmp, cases, src.output_names, atol).to_dict()
    params = sum(p.numel() for p in src.module.parameters())
    config: dict[str, Any] = {**asdict(cfg), "exporter_used": result.exporter.value}
    if result.fallback_reason:
        config["fallback"] = f"torch.export failed, TorchScript used: {result.fallback_reason}"
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
    if src.task is None and src.description.get("kind") != "huggingface":
        meta.pop("task")
    art = new_artifact(output, src.description, Step("export", config, figures), meta)
    art.steps.extend(steps)
    art.save()
    return art
