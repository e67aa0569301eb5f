"""Mamba (1): a selective state-space model, no attention. llama.cpp runs it with a recurrent
state per sequence instead of a KV cache."""

from __future__ import annotations

import gguf

from edgeinfer.exporters.gguf.base import Family, register

# A recurrent model has no trained context limit; llama.cpp needs a value (its converter writes this).
_UNBOUNDED_CONTEXT = 2**20


@register("MambaForCausalLM")
class Mamba(Family):
    arch = gguf.MODEL_ARCH.MAMBA

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", True))

    def write_hparams(self, w) -> None:
        d_model = self.embedding_length
        w.add_block_count(self.n_blocks)
        w.add_context_length(_UNBOUNDED_CONTEXT)
        w.add_embedding_length(d_model)
        w.add_feed_forward_length(0)  # no MLP; llama.cpp still reads the key
        w.add_head_count(0)  # no attention heads; likewise
        w.add_ssm_conv_kernel(int(self.hparam("conv_kernel", "d_conv", default=4)))
        w.add_ssm_inner_size(int(self.hparam("intermediate_size", "d_inner", default=2 * d_model)))
        w.add_ssm_state_size(int(self.hparam("state_size", "d_state", default=16)))
        w.add_ssm_time_step_rank(int(self.hparam("time_step_rank", "dt_rank", default=-(d_model // -16))))
        w.add_layer_norm_rms_eps(float(self.hparam("layer_norm_epsilon", "rms_norm_eps", default=1e-5)))
        w.add_ssm_dt_b_c_rms(False)  # plain Mamba normalises neither dt nor B/C (Falcon-Mamba does)

    def tensors(self, hf_name, data):
        if hf_name.endswith(".A_log"):
            data = -data.exp()  # llama.cpp's scan takes A itself
        elif hf_name.endswith("conv1d.weight"):
            data = data.squeeze(1)  # [inner, 1, kernel] depthwise -> [inner, kernel]
        yield self.gguf_name(hf_name), data
