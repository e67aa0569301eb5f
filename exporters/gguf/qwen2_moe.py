"""Qwen2-MoE: Qwen2 attention (Q/K/V biases, NeoX RoPE) with routed experts plus one shared
expert behind a sigmoid gate."""

from __future__ import annotations

import gguf

from edgeinfer.core.errors import UnsupportedError
from edgeinfer.exporters.gguf.base import register
from edgeinfer.exporters.gguf.qwen2 import Qwen2


@register("Qwen2MoeForCausalLM")
class Qwen2Moe(Qwen2):
    arch = gguf.MODEL_ARCH.QWEN2MOE

    def __init__(self, config) -> None:
        super().__init__(config)
        # llama.cpp's qwen2moe graph routes every layer and keeps the top-k weights as the softmax
        # gives them; a checkpoint that renormalises them or has dense layers would convert to a
        # file that computes something else.
        if config.get("norm_topk_prob"):
            raise UnsupportedError(
                "this Qwen2-MoE checkpoint renormalises its top-k expert weights (norm_topk_prob), "
                "which llama.cpp's qwen2moe graph does not; it would not match the source model"
            )
        if config.get("mlp_only_layers") or int(config.get("decoder_sparse_step", 1)) != 1:
            raise UnsupportedError(
                "this Qwen2-MoE checkpoint mixes dense and sparse layers (mlp_only_layers / "
                "decoder_sparse_step), which llama.cpp's qwen2moe graph does not"
            )

    def write_hparams(self, w) -> None:
        super().write_hparams(w)
        w.add_expert_feed_forward_length(int(self.hparam("moe_intermediate_size")))
        if (shared := self.config.get("shared_expert_intermediate_size")) is not None:
            w.add_expert_shared_feed_forward_length(int(shared))

    def tensors(self, hf_name, data):
        if hf_name.endswith("mlp.shared_expert_gate.weight"):
            data = data.reshape(-1)  # [1, hidden] -> the [hidden] vector llama.cpp reads
        yield from super().tensors(hf_name, data)
