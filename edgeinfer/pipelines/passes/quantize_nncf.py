"""quantize-nncf: INT8 by NNCF (OpenVINO's quantizer), a QDQ ONNX file that OpenVINO runs in INT8."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.compress.nncf_quant import NncfQuantConfig
from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.pipelines.passes import Pass, PassContext, Takes, register_pass

BATCH = 8
CALIB_SAMPLES = 300


def _run(source: str, output: Path, cfg: NncfQuantConfig, ctx: PassContext) -> Artifact:
    from edgeinfer.compress.nncf_quant import quantize_nncf
    from edgeinfer.compress.onnx_quant import check_not_quantized
    from edgeinfer.core.artifact import Step, load_artifact
    from edgeinfer.core.data import load_batches
    from edgeinfer.core.errors import InputError, option
    from edgeinfer.core.formats import load_onnx
    from edgeinfer.core.io import atomic_path, check_output
    from edgeinfer.pipelines.target import onnx_runner

    model = Path(source)
    check_output(output, [model], ctx.force)
    parent = load_artifact(model)
    check_not_quantized(load_onnx(model))
    if not ctx.calib:
        raise InputError(f"NNCF's INT8 needs {option('calib')}: an .npz, a folder of them, a .txt of sentences")
    inputs = onnx_runner(model, profile_first_run=False).inputs
    ctx.progress.stage(f"loading calibration data {ctx.calib}")
    samples = min(cfg.subset_size, CALIB_SAMPLES)
    batches = load_batches(ctx.calib, inputs, BATCH, parent.meta.get("tokenizer"), samples).batches
    with atomic_path(output, overwrite=ctx.force) as tmp:
        ctx.progress.stage("quantizing to INT8 with NNCF (for OpenVINO)")
        facts = quantize_nncf(model, tmp, cfg, batches)
    art = parent.derive(output, Step("quantize", {"method": "nncf-int8"} | cfg.to_dict() | facts, {}))
    art.save()
    return art


register_pass(
    Pass(
        "quantize-nncf",
        NncfQuantConfig,
        Takes.ONNX,
        ModelFormat.ONNX,
        _run,
        "NNCF INT8 (QDQ) for OpenVINO, calibrated",
    )
)
