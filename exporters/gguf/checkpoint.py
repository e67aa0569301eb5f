"""A Hugging Face checkpoint read tensor by tensor: config.json plus safetensors, sharded or not.

Headers are checked before anything is converted, so a truncated shard fails at once, and only
one tensor is in memory at a time: a model larger than RAM converts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeinfer.core import hf_folder
from edgeinfer.core.errors import InputError
from edgeinfer.core.formats import (
    SAFETENSORS_DTYPES,
    read_json_object,
    read_safetensors_header,
)


def read_config(path: Path) -> dict[str, Any]:
    """config.json of a causal-LM folder: a JSON object, no custom code, architectures named."""
    config = hf_folder.read_config(path)
    if not config.get("architectures"):
        raise InputError(f"{path / 'config.json'} names no architectures; it should list e.g. LlamaForCausalLM")
    return config


class Checkpoint:
    def __init__(self, path: Path) -> None:
        self.path = path
        index = path / "model.safetensors.index.json"
        if index.is_file():
            weight_map = read_json_object(index, "shard index").get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
                raise InputError(f"{index} has no weight_map of tensor -> file; re-download it")
            files = sorted({path / Path(f).name for f in weight_map.values()})
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise InputError(f"{path} is missing shard(s) {', '.join(missing)} listed in {index.name}")
        else:
            files = sorted(path.glob("*.safetensors"))
        if not files:
            pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
            hint = f" (found pickled {', '.join(pickled)}; edgeinfer does not unpickle checkpoints)" if pickled else ""
            raise InputError(f"{path} has no .safetensors weights{hint}")
        self.entries: dict[str, tuple[Path, list[int], str]] = {}
        for file in files:
            for name, entry in read_safetensors_header(file).items():
                self.entries[name] = (file, list(entry.shape), entry.dtype)
        self._open: dict[Path, Any] = {}

    def names(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> list[int]:
        return self.entries[name][1]

    def nbytes(self) -> int:
        return sum(SAFETENSORS_DTYPES[d] * _numel(s) for _, s, d in self.entries.values())

    def meta(self, name: str):
        """A tensor with the right shape and no data, for planning the output."""
        import torch

        return torch.empty(self.shape(name), dtype=torch.float32, device="meta")

    def load(self, name: str):
        """One tensor as float32, read from disk now (safetensors maps the file; nothing else stays)."""
        import torch
        from safetensors import safe_open

        file = self.entries[name][0]
        if file not in self._open:
            self._open[file] = safe_open(str(file), framework="pt")
        return self._open[file].get_tensor(name).to(torch.float32)


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
