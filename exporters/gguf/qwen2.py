"""Qwen2: Llama-like with biases on Q/K/V and NeoX-style RoPE, so no Q/K reordering."""

from __future__ import annotations

import gguf

from edgeinfer.exporters.gguf.base import Family, register


@register("Qwen2ForCausalLM")
class Qwen2(Family):
    arch = gguf.MODEL_ARCH.QWEN2

    def write_hparams(self, w) -> None:
        super().write_hparams(w)
        w.add_rope_dimension_count(self.head_dim)
