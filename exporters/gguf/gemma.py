"""Gemma and Gemma 2: RMSNorm weights stored as (w - 1), tied embeddings, GELU-tanh MLP.

Gemma 2 adds soft-capped attention and output logits, sliding-window layers and extra norms.
"""

from __future__ import annotations

import gguf

from edgeinfer.exporters.gguf.base import Family, register


@register("GemmaForCausalLM")
class Gemma(Family):
    arch = gguf.MODEL_ARCH.GEMMA

    def write_hparams(self, w) -> None:
        super().write_hparams(w)
        w.add_key_length(self.head_dim)
        w.add_value_length(self.head_dim)

    def skip(self, hf_name: str) -> bool:
        # Gemma always ties the output head to the embedding.
        return hf_name == "lm_head.weight" or super().skip(hf_name)

    def tensors(self, hf_name, data):
        # Gemma's RMSNorm multiplies by (1 + w); llama.cpp multiplies by w.
        if hf_name.endswith("norm.weight"):
            data = data + 1
        yield self.gguf_name(hf_name), data


@register("Gemma2ForCausalLM")
class Gemma2(Gemma):
    arch = gguf.MODEL_ARCH.GEMMA2

    def write_hparams(self, w) -> None:
        super().write_hparams(w)
        if (cap := self.config.get("attn_logit_softcapping")) is not None:
            w.add_attn_logit_softcapping(float(cap))
        if (cap := self.config.get("final_logit_softcapping")) is not None:
            w.add_final_logit_softcapping(float(cap))
        if (window := self.config.get("sliding_window")) is not None:
            w.add_sliding_window(int(window))
