"""A Hugging Face checkpoint read tensor by tensor: config.json plus safetensors, sharded or not.

Headers are checked before anything is converted, so a truncated shard fails at once, and only
one tensor is in memory at a time: a model larger than RAM converts.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from edgeinfer.errors import InputError, UnsupportedError

# safetensors dtype names -> bytes per element
_DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise InputError(f"{path} is not a directory; GGUF export takes a Hugging Face model directory")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise InputError(f"{path} has no config.json; a Hugging Face model directory needs config.json "
                         "and safetensors weights")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{config_file} is not valid JSON: {e}") from e
    if config.get("auto_map"):
        raise UnsupportedError(f"{path} needs custom code (auto_map in config.json); edgeinfer never runs "
                               "remote code")
    if not config.get("architectures"):
        raise InputError(f"{config_file} names no architectures; it should list e.g. LlamaForCausalLM")
    return config


def read_header(file: Path) -> dict[str, Any]:
    """The safetensors JSON header, after checking the file holds every byte it promises."""
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InputError(f"{file.name} is not a safetensors file ({size} bytes); re-download it")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise InputError(f"{file.name} is truncated or not safetensors (header of {n} bytes in a "
                             f"{size}-byte file); re-download it")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{file.name} has a corrupt safetensors header; re-download it") from e
    header.pop("__metadata__", None)
    end = max((t["data_offsets"][1] for t in header.values()), default=0)
    if 8 + n + end > size:
        raise InputError(f"{file.name} is truncated: its tensors need {8 + n + end} bytes, the file has {size}; "
                         "re-download it")
    return header


class Checkpoint:
    def __init__(self, path: Path) -> None:
        self.path = path
        index = path / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted({path / f for f in weight_map.values()})
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
            for name, info in read_header(file).items():
                if info["dtype"] not in _DTYPE_SIZE:
                    raise UnsupportedError(f"{file.name}: tensor {name} has dtype {info['dtype']}")
                self.entries[name] = (file, info["shape"], info["dtype"])
        self._open: dict[Path, Any] = {}

    def names(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> list[int]:
        return self.entries[name][1]

    def nbytes(self) -> int:
        return sum(_DTYPE_SIZE[d] * _numel(s) for _, s, d in self.entries.values())

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
