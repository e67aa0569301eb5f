"""Mistral: the Llama graph with grouped-query attention; llama.cpp runs it as the llama architecture."""

from __future__ import annotations

from edgeinfer.exporters.gguf.base import register
from edgeinfer.exporters.gguf.llama import Llama


@register("MistralForCausalLM")
class Mistral(Llama):
    pass
