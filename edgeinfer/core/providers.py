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
        """The PyPI distribution that ships this provider."""
        return _PROVIDER_PACKAGES[self][0]

    def how_to_get(self) -> str:
        """What to do to have this provider: `pip install` its package when that is not installed;
        when it is, that this build of it lacks the provider, and what does have it. Never a pip
        command for a package that is already here."""
        from importlib import metadata

        package, note = _PROVIDER_PACKAGES[self]
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            return f"pip install {package}" + (f"; {note}" if note else "")
        return f"{package} {version} is installed but does not offer it" + (f": {note}" if note else "")

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


# The distribution that ships each provider, and what else it takes.
_PROVIDER_PACKAGES = {
    Provider.CPU: ("onnxruntime", ""),
    Provider.CUDA: ("onnxruntime-gpu", "it needs the CUDA and cuDNN libraries of its version"),
    Provider.TENSORRT: ("onnxruntime-gpu", "it needs TensorRT's libraries"),
    Provider.QNN: ("onnxruntime-qnn", ""),
    Provider.COREML: ("onnxruntime", "CoreML is in its macOS builds only"),
    Provider.OPENVINO: ("onnxruntime-openvino", ""),
    Provider.DIRECTML: ("onnxruntime-directml", "Windows only"),
    Provider.XNNPACK: (
        "onnxruntime",
        "XNNPACK is in its mobile packages and source builds (--use_xnnpack) only",
    ),
}
