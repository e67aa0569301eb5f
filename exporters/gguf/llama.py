"""Llama: Llama 2/3, SmolLM2, TinyLlama, Chinese-LLaMA and every checkpoint saved as LlamaForCausalLM."""

from __future__ import annotations

import gguf

from edgeinfer.exporters.gguf.base import Family, permute_rope, register


@register("LlamaForCausalLM")
class Llama(Family):
    arch = gguf.MODEL_ARCH.LLAMA

    def write_hparams(self, w) -> None:
        super().write_hparams(w)
        w.add_rope_dimension_count(self.head_dim)

    def tensors(self, hf_name, data):
        # llama.cpp's llama graph uses interleaved RoPE; Hugging Face stores rotate_half order.
        if hf_name.endswith("q_proj.weight") or hf_name.endswith("q_proj.bias"):
            data = permute_rope(data, self.head_count)
        elif hf_name.endswith("k_proj.weight") or hf_name.endswith("k_proj.bias"):
            data = permute_rope(data, self.head_count_kv)
        yield from super().tensors(hf_name, data)
