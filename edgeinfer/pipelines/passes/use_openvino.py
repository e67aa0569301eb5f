"""use-openvino: the model runs on OpenVINO (a device, an inference precision), not ONNX Runtime.

The file is unchanged (OpenVINO compiles the ONNX graph when it loads it); the step records the
runtime choice, so a recipe that ends with it is measured, bundled and verified on OpenVINO.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from edgeinfer.core.artifact import Artifact, ModelFormat
from edgeinfer.core.config import PassConfig
from edgeinfer.pipelines.passes import Pass, PassContext, Takes, register_pass
from edgeinfer.pipelines.target import USE_OPENVINO


class OvDevice(StrEnum):
    CPU = "CPU"
    GPU = "GPU"
    NPU = "NPU"


class OvPrecision(StrEnum):
    F32 = "f32"
    BF16 = "bf16"
    F16 = "f16"


@dataclass(frozen=True)
class OpenVinoConfig(PassConfig):
    """Where OpenVINO runs the model.

    Args:
        device: OpenVINO's device: CPU, GPU or NPU.
        precision: the inference precision of float layers (f32, bf16, f16); None: OpenVINO's
            default for the device (BF16 on a CPU with BF16). Loading refuses one the device lacks.
    """

    what = "OpenVINO config"

    device: OvDevice = OvDevice.CPU
    precision: OvPrecision | None = None


def _run(source: str, output: Path, cfg: OpenVinoConfig, ctx: PassContext) -> Artifact:
    import shutil

    from edgeinfer.core.artifact import Step, load_artifact
    from edgeinfer.core.io import atomic_path, check_output
    from edgeinfer.runtime.openvino import openvino_version

    model = Path(source)
    check_output(output, [model], ctx.force)
    parent = load_artifact(model)
    with atomic_path(output, overwrite=ctx.force) as tmp:
        shutil.copyfile(model, tmp)
    step = Step(USE_OPENVINO, cfg.to_dict() | {"openvino": openvino_version()}, {})
    art = parent.derive(output, step)
    art.save()
    return art


register_pass(
    Pass(
        USE_OPENVINO,
        OpenVinoConfig,
        Takes.ONNX,
        ModelFormat.ONNX,
        _run,
        "run on OpenVINO (device, precision); the model is unchanged",
    )
)
