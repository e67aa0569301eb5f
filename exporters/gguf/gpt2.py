"""GPT-2: learned position embeddings, LayerNorm with bias, Conv1D weights stored transposed."""

from __future__ import annotations

import gguf

from edgeinfer.exporters.gguf.base import Family, register


@register("GPT2LMHeadModel")
class GPT2(Family):
    arch = gguf.MODEL_ARCH.GPT2
    _conv1d = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", True))

    def write_hparams(self, w) -> None:
        super().write_hparams(w)
        w.add_layer_norm_eps(float(self.hparam("layer_norm_epsilon")))

    def tensors(self, hf_name, data):
        # transformers' Conv1D keeps weights as [in, out]; GGUF wants [out, in] like nn.Linear.
        if hf_name.endswith(self._conv1d):
            data = data.T
        yield self.gguf_name(hf_name), data
