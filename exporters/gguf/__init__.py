"""Hugging Face causal LMs -> GGUF: one file per model family, registered by architecture name.

`convert` streams the checkpoint into a GGUF through gguf-py's writer; the export command then
checks the file against the source model (tokenizer round-trip, logits parity) before keeping it.
"""

from edgeinfer.exporters.gguf import (  # noqa: F401  (registration)
    gemma,
    gpt2,
    llama,
    mamba,
    mistral,
    mixtral,
    phi3,
    qwen2,
    qwen2_moe,
)
from edgeinfer.exporters.gguf.base import FAMILIES, family_for
from edgeinfer.exporters.gguf.convert import GgufExportConfig, convert

__all__ = ["FAMILIES", "GgufExportConfig", "convert", "family_for"]
