"""PyTorch -> ONNX with dynamic batch/sequence axes, torch.export first and TorchScript as fallback.

The fallback is reported and recorded, never silent; validation (validate.py) decides success.
"""

from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import BackendError, ConfigError, InputError
from edgeinfer.exporters.source import SourceModel, export_cause, fails_in_pytorch

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18


class Exporter(StrEnum):
    AUTO = "auto"  # torch.export (dynamo), then TorchScript if that fails
    DYNAMO = "dynamo"
    TORCHSCRIPT = "torchscript"


@dataclass(frozen=True)
class OnnxExportConfig(PassConfig):
    """How to export to ONNX.

    Args:
        opset: the ONNX opset to write (torch.export writes 18 and above, TorchScript 7 to 20).
        exporter: auto (torch.export, then TorchScript, reported), dynamo or torchscript.
        static_shapes: fix every input shape to the example's (NPUs need it).
        atol: absolute tolerance of the validation (default: by output dtype).
        task: for a Hugging Face folder, a registered export task (default: from its architecture).
        allow_new_head: export a task head the checkpoint holds no weights for (random; recorded).
        image_size: (height, width) of the example images of an image model whose folder has no
            image processor (preprocessor_config.json).
        allow_constant_outputs: export a model an output of which PyTorch gives as one value
            everywhere on every validation input (validation proves nothing there; recorded).
    """

    opset: int = DEFAULT_OPSET
    exporter: Exporter = Exporter.AUTO
    static_shapes: bool = False
    atol: float | None = None
    task: str | None = None
    allow_new_head: bool = False
    image_size: tuple[int, int] | None = None
    allow_constant_outputs: bool = False

    what: ClassVar[str] = "ONNX export config"

    def check(self) -> None:
        if not 7 <= self.opset <= 26:
            raise ConfigError(f"opset {self.opset} is outside the ONNX opsets 7 to 26")
        if self.atol is not None and not self.atol > 0:
            raise ConfigError(f"atol must be positive, got {self.atol}")
        if self.image_size is not None and not all(8 <= int(n) <= 8192 for n in self.image_size):
            raise ConfigError(f"image size {self.image_size} must be 8 to 8192 pixels a side")
        if self.task is not None:
            from edgeinfer.exporters.tasks import get_task

            get_task(self.task)  # an unknown task fails here, listing the registered ones


# `--exporter auto` tries TorchScript first for the architectures whose declaration says why
# (exporters/architectures; measured, see docs/transformer-speed.md), up to this opset.
TORCHSCRIPT_MAX_OPSET = 20


@dataclass
class ExportResult:
    exporter: Exporter
    fallback_reason: str | None
    choice: str | None = None  # why `auto` picked the exporter it tried first, when not torch.export


def _quiet():
    """torch.onnx prints pages of progress; keep them off the user's terminal."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    buf = io.StringIO()
    return redirect_stdout(buf), redirect_stderr(buf)


def _export_dynamo(src: SourceModel, path: Path, cfg: OnnxExportConfig) -> None:
    import torch

    args = tuple(src.example.values())
    dynamic = None
    if not cfg.static_shapes:
        dynamic = (tuple(src.dynamic_axes.get(n) or None for n in src.input_names),)
    out, err = _quiet()
    with out, err, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            src.module,
            args,
            None,
            dynamo=True,
            input_names=src.input_names,
            output_names=src.output_names,
            dynamic_shapes=dynamic,
            opset_version=cfg.opset,
            optimize=True,
            verbose=False,
            external_data=False,
        )
    if program is None:
        raise BackendError("torch.onnx.export returned no program")
    program.save(str(path), external_data=_too_big(program))


def _too_big(program) -> bool:
    # Protobuf cannot hold a file over 2 GiB; larger models keep weights in a .data file beside it.
    total = sum(int(getattr(v.const_value, "nbytes", 0) or 0) for v in program.model.graph.initializers.values())
    return total > 1_800_000_000


def _export_torchscript(src: SourceModel, path: Path, cfg: OnnxExportConfig) -> None:
    import torch

    args = tuple(src.example.values())
    axes = None
    if not cfg.static_shapes:
        axes = {n: dict(src.dynamic_axes.get(n, {})) for n in src.input_names}
        for name in src.output_names:
            axes[name] = dict(src.output_axes.get(name) or {0: "batch"})
    out, err = _quiet()
    with out, err, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            src.module,
            args,
            str(path),
            dynamo=False,
            input_names=src.input_names,
            output_names=src.output_names,
            dynamic_axes=axes,
            opset_version=cfg.opset,
            do_constant_folding=True,
        )


def export_onnx(src: SourceModel, path: Path, cfg: OnnxExportConfig) -> ExportResult:
    """Write `src` as ONNX to `path`; return which exporter produced it and why, if it fell back."""
    _runs_in_pytorch(src)
    if cfg.exporter is Exporter.TORCHSCRIPT:
        _run(_export_torchscript, src, path, cfg, "TorchScript")
        return ExportResult(Exporter.TORCHSCRIPT, None)
    from edgeinfer.exporters.architectures import architectures

    declared = architectures().get(str(src.description.get("model_type")))
    choice = declared.torchscript_first if declared else ""
    if cfg.exporter is Exporter.AUTO and choice and cfg.opset <= TORCHSCRIPT_MAX_OPSET:
        try:
            _run(_export_torchscript, src, path, cfg, "TorchScript")
            return ExportResult(Exporter.TORCHSCRIPT, None, choice)
        except BackendError as e:
            log.warning(f"fallback: the TorchScript exporter failed ({str(e)[:160]}); trying torch.export")
            _run(_export_dynamo, src, path, cfg, "torch.export")
            return ExportResult(Exporter.DYNAMO, str(e), choice)
    try:
        _run(_export_dynamo, src, path, cfg, "torch.export")
        return ExportResult(Exporter.DYNAMO, None)
    except BackendError as e:
        if cfg.exporter is Exporter.DYNAMO:
            raise
        reason = str(e)
        log.warning(f"fallback: torch.export-based exporter failed ({reason[:160]}); trying the TorchScript exporter")
        _run(_export_torchscript, src, path, cfg, "TorchScript")
        return ExportResult(Exporter.TORCHSCRIPT, reason)


def _runs_in_pytorch(src: SourceModel) -> None:
    """Run the model once on its example inputs: a model that fails in PyTorch itself (a BatchNorm
    with the wrong number of channels, a shape that does not fit) is the model's fault, exit 2, not
    an exporter failure blamed on TorchScript or torch.export."""
    import torch

    from edgeinfer.core.stdio import quiet_native

    if src.checked_in_pytorch:
        return  # source_from_module ran it already
    module = src.module
    training = getattr(module, "training", False)
    if training:
        module.eval()  # as the exporters trace it: no batch statistics updated by this run
    try:
        with torch.no_grad(), quiet_native():
            module(*src.example.values())
    except Exception as e:
        raise fails_in_pytorch(e) from e
    finally:
        if training:
            module.train()


def _run(fn, src, path, cfg, name) -> None:
    from edgeinfer.core.stdio import quiet_native

    try:
        # The TorchScript exporter prints whole graphs from C++ on an unsupported operator (230 KB
        # for a mixture of experts): native output stays off the user's streams.
        with quiet_native():
            fn(src, path, cfg)
    except (InputError, BackendError):
        raise
    except Exception as e:
        cause = export_cause(e)
        hint = next((h for op, h in _NO_ONNX_OPERATOR.items() if op in cause), "")
        raise BackendError(f"{name} export failed: {cause}{hint}") from e


# Operators that ONNX has no counterpart for, and what to do instead.
_NO_ONNX_OPERATOR = {
    "grouped_mm": " (mixture-of-experts routing, which ONNX has no operator for: export the model to GGUF, "
    "-o model.gguf, and run it on llama.cpp)",
    "histc": " (mixture-of-experts routing counts tokens per expert with histc, which ONNX lacks: export the "
    "model to GGUF, -o model.gguf, and run it on llama.cpp)",
}
