"""A PEFT LoRA adapter merged into base weights as they stream past: W + scale * B @ A.

Every adapted layer is checked against the base checkpoint before conversion starts, so an
adapter trained for another base model is refused instead of producing a broken GGUF.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import InputError, UnsupportedError

_PREFIX = "base_model.model."


class LoraAdapter:
    def __init__(self, path: Path, base_shapes: dict[str, list[int]]) -> None:
        import torch
        from safetensors.torch import load_file

        from edgeinfer.core.formats import read_json_object, read_safetensors_header

        self.path = path
        config_file, weights = path / "adapter_config.json", path / "adapter_model.safetensors"
        if not config_file.is_file() or not weights.is_file():
            raise InputError(
                f"{path} is not a PEFT LoRA adapter: it needs adapter_config.json and adapter_model.safetensors"
            )
        cfg: dict[str, Any] = read_json_object(config_file, "adapter config")
        if not isinstance(cfg.get("r"), int) or cfg["r"] <= 0:
            raise InputError(f"{config_file} has no positive integer rank 'r'; it is not a LoRA adapter config")
        if cfg.get("peft_type", "LORA") != "LORA":
            raise UnsupportedError(f"{path} is a {cfg['peft_type']} adapter; only LoRA adapters are merged")
        if cfg.get("use_dora"):
            raise UnsupportedError(f"{path} is a DoRA adapter; only plain LoRA is merged")
        read_safetensors_header(weights)  # a truncated adapter fails here, with the file named
        tensors = load_file(str(weights))
        if any(".modules_to_save." in k or "lora_embedding" in k for k in tensors):
            raise UnsupportedError(
                f"{path} also trains whole modules or embeddings (modules_to_save / "
                "lora_embedding); merge it with PEFT's merge_and_unload and export the result"
            )
        r, alpha = int(cfg["r"]), float(cfg.get("lora_alpha", cfg["r"]))
        self.scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
        self.fan_in_fan_out = bool(cfg.get("fan_in_fan_out", False))
        self.pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for key, a in tensors.items():
            if ".lora_A." not in key:
                continue
            b = tensors.get(key.replace(".lora_A.", ".lora_B."))
            base = key.removeprefix(_PREFIX).replace(".lora_A", "")
            if b is None:
                raise InputError(f"{path}: {key} has no matching lora_B tensor; the adapter is incomplete")
            if base not in base_shapes:
                raise InputError(
                    f"LoRA adapter {path} does not match this base model: it adapts {base}, which the "
                    "base checkpoint does not have (was it trained on another model?)"
                )
            out_in = list(base_shapes[base])
            if self.fan_in_fan_out:
                out_in = out_in[::-1]
            if [b.shape[0], a.shape[1]] != out_in or a.shape[0] != b.shape[1]:
                raise InputError(
                    f"LoRA adapter {path} does not match this base model: {base} is {base_shapes[base]} "
                    f"in the base, the adapter expects [{b.shape[0]}, {a.shape[1]}] (rank {a.shape[0]})"
                )
            self.pairs[base] = (a.float(), b.float())
        if not self.pairs:
            raise InputError(f"{path} holds no lora_A/lora_B tensors")
        self.config = {
            "path": str(path.resolve()),
            "rank": r,
            "alpha": alpha,
            "scale": self.scale,
            "layers": len(self.pairs),
            "base_model": cfg.get("base_model_name_or_path"),
        }

    def merge(self, name: str, weight):
        if name not in self.pairs:
            return weight
        a, b = self.pairs[name]
        delta = (b @ a) * self.scale
        return weight + (delta.T if self.fan_in_fan_out else delta)
