"""llama.cpp quantization of GGUF models (k-quants and the legacy types) through llama-cpp-python.

Uses the binding of llama.cpp's own quantizer (`llama_model_quantize`); nothing is re-implemented.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import BackendError, ConfigError, MissingDependencyError
from edgeinfer.core.formats import open_gguf
from edgeinfer.core.gguf_types import GgufType
from edgeinfer.core.stdio import captured_fd


@dataclass(frozen=True)
class GgufQuantConfig(PassConfig):
    """How llama.cpp quantizes a GGUF.

    Args:
        type: the target type (Q4_K_M, Q8_0, ...).
        threads: quantization threads (0: all cores).
        allow_requantize: accept a source that is itself quantized (a Q4_1 download, say).
        calib: a calibration text: every quantized tensor is weighted by the importance matrix
            computed on it (pipelines.imatrix; the same tensor types, llama.cpp's blocks).
    """

    type: GgufType
    threads: int = 0
    allow_requantize: bool = True
    calib: str | None = None

    what: ClassVar[str] = "GGUF quantization config"

    def check(self) -> None:
        if self.threads < 0:
            raise ConfigError(f"threads must not be negative, got {self.threads}")


def quantize_gguf(source: Path, output: Path, cfg: GgufQuantConfig) -> dict[str, int]:
    """Quantize; return how many tensors llama.cpp had to give another type than asked for.

    k-quants need rows that are multiples of 256; narrower tensors fall back to a legacy type.
    """
    try:
        import llama_cpp
    except ImportError as e:
        raise MissingDependencyError("llama-cpp-python", "GGUF quantization") from e
    params = llama_cpp.llama_model_quantize_default_params()
    try:
        params.ftype = getattr(llama_cpp, cfg.type.ftype_constant)
    except AttributeError:
        raise ConfigError(f"this llama-cpp-python build has no {cfg.type.value}") from None
    params.nthread = cfg.threads or (os.cpu_count() or 1)
    params.allow_requantize = cfg.allow_requantize
    open_gguf(source)  # llama.cpp trusts the header's sizes: it only sees a file this check accepted
    with captured_fd(2) as read_log:
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(output).encode(), ctypes.pointer(params))
        log = read_log()
    if rc != 0 or not Path(output).exists():
        last = next((line for line in reversed(log.splitlines()) if line.strip()), "")
        raise BackendError(f"llama.cpp could not quantize {source.name} to {cfg.type.value} (code {rc}): {last[:200]}")
    return {"fallback_tensors": sum("falling back" in line for line in log.splitlines())}
