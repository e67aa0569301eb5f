"""The GGUF file types, named as llama.cpp's `llama-quantize` names them: one enum for the exporter
(which writes F32, F16, BF16 and Q8_0 itself) and for llama.cpp's quantizer (everything else)."""

from __future__ import annotations

from enum import StrEnum


class GgufType(StrEnum):
    """A GGUF file type; parsing (core.errors.parse_choice) ignores case, so `q4_k_m` works too."""

    F32 = "F32"
    F16 = "F16"
    BF16 = "BF16"
    Q8_0 = "Q8_0"
    Q6_K = "Q6_K"
    Q5_K_M = "Q5_K_M"
    Q5_K_S = "Q5_K_S"
    Q5_1 = "Q5_1"
    Q5_0 = "Q5_0"
    Q4_K_M = "Q4_K_M"
    Q4_K_S = "Q4_K_S"
    Q4_1 = "Q4_1"
    Q4_0 = "Q4_0"
    Q3_K_L = "Q3_K_L"
    Q3_K_M = "Q3_K_M"
    Q3_K_S = "Q3_K_S"
    Q2_K = "Q2_K"

    @property
    def ftype_constant(self) -> str:
        """The llama.cpp `llama_ftype` constant's name in llama-cpp-python."""
        return "LLAMA_FTYPE_ALL_F32" if self is GgufType.F32 else f"LLAMA_FTYPE_MOSTLY_{self.value}"


# What the exporter writes from a Hugging Face checkpoint; the rest come from llama.cpp's quantizer.
EXPORT_TYPES = (GgufType.F32, GgufType.F16, GgufType.BF16, GgufType.Q8_0)


class KvType(StrEnum):
    """The element type of llama.cpp's KV cache: f16 (its default), q8_0 or q4_0 (less memory, some
    quality; a quantized V cache needs flash attention)."""

    F16 = "f16"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"
