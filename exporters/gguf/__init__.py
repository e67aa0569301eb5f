"""Hugging Face causal LMs -> GGUF: one file per model family, registered by architecture name.

`convert` streams the checkpoint into a GGUF through gguf-py's writer; the export command then
checks the file against the source model (tokenizer round-trip, logits parity) before keeping it.
"""

from edgeinfer.exporters.gguf import gemma, gpt2, llama, mistral, phi3, qwen2  # noqa: F401  (registration)
from edgeinfer.exporters.gguf.base import FAMILIES, family_for
from edgeinfer.exporters.gguf.convert import GgufExportConfig, convert

__all__ = ["FAMILIES", "GgufExportConfig", "convert", "family_for"]
