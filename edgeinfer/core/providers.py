"""Names of ONNX Runtime execution providers: the vocabulary device profiles and the runtime share.

Kept in the ground tier so that `devices` (profiles name providers) and `runtime` (sessions run
on them) need not import each other.
"""

from __future__ import annotations

from enum import StrEnum

from edgeinfer.core.errors import ConfigError


class Provider(StrEnum):
    """ONNX Runtime execution providers edgeinfer knows, with the package that ships each."""

    CPU = "CPUExecutionProvider"
    CUDA = "CUDAExecutionProvider"
    TENSORRT = "TensorrtExecutionProvider"
    QNN = "QNNExecutionProvider"
    COREML = "CoreMLExecutionProvider"
    OPENVINO = "OpenVINOExecutionProvider"
    DIRECTML = "DmlExecutionProvider"
    XNNPACK = "XnnpackExecutionProvider"

    @property
    def package(self) -> str:
        return _PROVIDER_PACKAGES[self]

    @classmethod
    def parse(cls, name: str) -> Provider:
        """Accept the full name or a short one: `qnn`, `cuda`, `CPUExecutionProvider`."""
        for p in cls:
            if name.lower() in (p.value.lower(), p.short):
                return p
        valid = ", ".join(p.short for p in cls)
        raise ConfigError(f"unknown execution provider {name!r}; valid: {valid}")

    @property
    def short(self) -> str:
        return self.value.removesuffix("ExecutionProvider").lower()


_PROVIDER_PACKAGES = {
    Provider.CPU: "onnxruntime",
    Provider.CUDA: "onnxruntime-gpu",
    Provider.TENSORRT: "onnxruntime-gpu (and TensorRT)",
    Provider.QNN: "onnxruntime-qnn",
    Provider.COREML: "onnxruntime (macOS build)",
    Provider.OPENVINO: "onnxruntime-openvino",
    Provider.DIRECTML: "onnxruntime-directml",
    Provider.XNNPACK: "onnxruntime (a build with XNNPACK)",
}
