"""The schema of a deploy bundle's manifest.json, which `verify` reads as untrusted input.

Every key `optimize` writes is declared with its type; a manifest with a wrong type, a non-finite
tolerance, an unknown key, no model or golden file, or a model or golden file it does not hash is
refused with one line (exit 2) before anything in the bundle is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from edgeinfer.core.errors import InputError
from edgeinfer.core.schema import SHA256_HEX, Record
from edgeinfer.pipelines.optimize.search import Budgets


@dataclass(frozen=True)
class FileEntry(Record):
    size: int
    sha256: str

    def check(self, where: str) -> None:
        if self.size < 0:
            raise InputError(f"{where}.size is {self.size}; a file size is at least 0")
        if not SHA256_HEX.fullmatch(self.sha256):
            raise InputError(f"{where}.sha256 is not a sha256 (64 lowercase hex digits)")


@dataclass(frozen=True)
class OnnxTolerance(Record):
    min_cosine: float
    max_abs_diff: float

    def check(self, where: str) -> None:
        if not -1.0 <= self.min_cosine <= 1.0 or self.max_abs_diff < 0:
            raise InputError(f"{where}: min_cosine must be in [-1, 1] and max_abs_diff at least 0")


@dataclass(frozen=True)
class LlmTolerance(Record):
    max_kld: float
    min_top1: float

    def check(self, where: str) -> None:
        if self.max_kld < 0 or not 0.0 <= self.min_top1 <= 1.0:
            raise InputError(f"{where}: max_kld must be at least 0 and min_top1 in [0, 1]")


@dataclass(frozen=True)
class OpenVinoEntry(Record):
    """Where OpenVINO runs a bundle's model: its device and the inference precision chosen."""

    device: Literal["CPU", "GPU", "NPU"] = "CPU"
    precision: Literal["f32", "bf16", "f16"] | None = None


@dataclass(frozen=True)
class Manifest(Record):
    """manifest.json of a bundle (schema 1), as `write_bundle` and `write_llm_bundle` write it."""

    schema: Literal[1]
    model: str
    golden: str
    files: dict[str, FileEntry]
    tolerance: OnnxTolerance | LlmTolerance
    format: Literal["onnx", "gguf"] = "onnx"
    device: str = ""
    providers: list[str] = field(default_factory=lambda: ["cpu"])
    threads: int | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    budgets: Budgets = Budgets()  # what optimize held the bundle to, checked as optimize checks it
    measured: dict[str, Any] = field(default_factory=dict)
    candidate: str = ""
    edgeinfer_version: str = ""
    runtime: Literal["onnxruntime", "openvino", "llama.cpp"] | None = None  # None: onnxruntime (older bundles)
    openvino: OpenVinoEntry | None = None  # with runtime "openvino"
    n_ctx: int = 2048
    n_gpu_layers: int = 0
    repack: bool | None = None
    scored_text: str | None = None

    def check(self, where: str) -> None:
        if not self.files:
            raise InputError(f"{where} lists no files; every file a bundle ships is listed with its sha256")
        for name in (self.model, self.golden):
            if name not in self.files:
                raise InputError(f"{where} does not hash {name!r}; the model and the golden file must be listed")
        if not self.providers or len(self.providers) > 16:
            raise InputError(f"{where}.providers must name 1 to 16 execution providers")
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise InputError(f"{where}.threads is {self.threads}; choose 1 ... 1024 or null")
        if not 16 <= self.n_ctx <= 1 << 20:
            raise InputError(f"{where}.n_ctx is {self.n_ctx}; a context is 16 ... {1 << 20} tokens")
        if not 0 <= self.n_gpu_layers <= 100_000:
            raise InputError(f"{where}.n_gpu_layers is {self.n_gpu_layers}; choose 0 ... 100000")
        if (self.runtime == "openvino") != (self.openvino is not None):
            raise InputError(f'{where}: runtime "openvino" and an openvino entry (device, precision) go together')
        if (
            self.runtime == "llama.cpp"
            and self.format != "gguf"
            or self.runtime == "openvino"
            and self.format != "onnx"
        ):
            raise InputError(f"{where}.runtime {self.runtime!r} does not run a {self.format.upper()} model")
        wanted = LlmTolerance if self.format == "gguf" else OnnxTolerance
        if not isinstance(self.tolerance, wanted):
            keys = "max_kld and min_top1" if self.format == "gguf" else "min_cosine and max_abs_diff"
            raise InputError(f"{where}.tolerance of a {self.format.upper()} bundle needs {keys}")
