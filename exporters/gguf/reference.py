"""The source side of the GGUF self-check: Hugging Face tokenization and log-probs from transformers.

The model loads as it would for the user (safetensors only, no remote code), with the same LoRA
merge the converter applies, in float32, so it is the reference every output type is held to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeinfer.core.errors import InputError


def load_tokenizer(source: Path):
    """The folder's own tokenizer (checked, no remote code), with no padding token invented."""
    from edgeinfer.core.hf_folder import load_tokenizer as load

    return load(source, pad_with_eos=False)


def log_probs(source: Path, tokens: list[int], adapter: str | None = None) -> np.ndarray:
    """Log-softmax over the vocabulary at every position of `tokens` (one sequence), float32."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(source),
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=True,
            attn_implementation="eager",
            dtype=torch.float32,
        ).eval()
    except (OSError, ValueError, KeyError) as e:
        raise InputError(
            f"could not load {source} in transformers for the parity check: {str(e).splitlines()[0]}"
        ) from e
    if adapter:
        from edgeinfer.exporters.gguf.checkpoint import Checkpoint
        from edgeinfer.exporters.gguf.lora import LoraAdapter

        ckpt = Checkpoint(source)
        lora = LoraAdapter(Path(adapter), {n: ckpt.shape(n) for n in ckpt.names()})
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in lora.pairs:
                # Checkpoint names may carry a prefix the loaded module does not (or the reverse).
                target = params.get(name, params.get(name.removeprefix("transformer.")))
                if target is None:
                    raise InputError(f"adapter layer {name} is not a parameter of the loaded model")
                target.copy_(lora.merge(name, target.detach().clone()))
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float()
    return torch.log_softmax(logits, dim=-1).numpy()
