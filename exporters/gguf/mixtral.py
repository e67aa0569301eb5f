"""Mixtral: the Llama graph with a sparse mixture-of-experts MLP; llama.cpp runs it as the llama
architecture with an expert count, renormalising the chosen experts' weights as Mixtral does."""

from __future__ import annotations

from edgeinfer.exporters.gguf.base import register
from edgeinfer.exporters.gguf.llama import Llama


@register("MixtralForCausalLM")
class Mixtral(Llama):
    def write_hparams(self, w) -> None:
        super().write_hparams(w)
        # A Mixtral expert's hidden width is the model's intermediate_size.
        w.add_expert_feed_forward_length(int(self.hparam("intermediate_size")))
