"""Hugging Face causal LMs -> GGUF: one file per model family, registered by architecture name.

Every module of this package is imported here, so a family file registers itself (base.register)
with no list to edit: adding a family is its file and its tiny test model.

`convert` streams the checkpoint into a GGUF through gguf-py's writer; the export command then
checks the file against the source model (tokenizer round-trip, logits parity) before keeping it.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from edgeinfer.exporters.gguf.base import FAMILIES, family_for  # noqa: E402
from edgeinfer.exporters.gguf.convert import GgufExportConfig, convert  # noqa: E402

__all__ = ["FAMILIES", "GgufExportConfig", "convert", "family_for"]
