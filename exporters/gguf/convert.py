"""Hugging Face causal LM -> GGUF, streamed: plan every tensor from shapes, then write one at a time.

gguf-py's GGUFWriter writes the header, metadata and tensor table first; tensor data follows in
the same order, so peak memory is one tensor (plus a LoRA adapter), not the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import ConfigError
from edgeinfer.core.gguf_types import EXPORT_TYPES, GgufType
from edgeinfer.core.hf_folder import check_tokenizer_files
from edgeinfer.core.progress import QUIET, Progress
from edgeinfer.exporters.gguf.base import FAMILIES, expert_groups, family_for
from edgeinfer.exporters.gguf.checkpoint import Checkpoint, read_config
from edgeinfer.exporters.gguf.llamacpp import convert as convert_with_llamacpp
from edgeinfer.exporters.gguf.llamacpp import converts as llamacpp_converts


@dataclass(frozen=True)
class GgufExportConfig(PassConfig):
    """How to convert a Hugging Face causal LM to GGUF.

    Args:
        outtype: the tensor type written (f32, f16, bf16, q8_0); k-quants come after, from llama.cpp.
        adapter: a PEFT LoRA adapter folder merged into the weights first.
        check_tokens: tokens of the self-check's log-prob parity with transformers (at least 16).
    """

    outtype: GgufType = GgufType.F16
    adapter: str | None = None
    check_tokens: int = 256

    what: ClassVar[str] = "GGUF export config"

    def check(self) -> None:
        if self.outtype not in EXPORT_TYPES:
            raise ConfigError(
                f"outtype {self.outtype.value} is a llama.cpp quantization; export writes "
                f"{', '.join(t.value.lower() for t in EXPORT_TYPES)}: export F16, then quantize the GGUF"
            )
        if self.check_tokens < 16:
            raise ConfigError(f"check_tokens {self.check_tokens} must be at least 16: the parity check needs real text")


def _ggml_type(outtype: GgufType):
    import gguf

    return {
        GgufType.F32: gguf.GGMLQuantizationType.F32,
        GgufType.F16: gguf.GGMLQuantizationType.F16,
        GgufType.BF16: gguf.GGMLQuantizationType.BF16,
        GgufType.Q8_0: gguf.GGMLQuantizationType.Q8_0,
    }[outtype]


def _file_type(outtype: GgufType) -> int:
    import gguf

    return {
        GgufType.F32: gguf.LlamaFileType.ALL_F32,
        GgufType.F16: gguf.LlamaFileType.MOSTLY_F16,
        GgufType.BF16: gguf.LlamaFileType.MOSTLY_BF16,
        GgufType.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
    }[outtype]


def tensor_type(name: str, shape: tuple[int, ...], outtype: GgufType, float32: bool = False):
    """As llama.cpp's converter does: vectors (norms, biases) and the tensors the family reads only
    as float32 stay F32, and a row that does not split into Q8_0 blocks of 32 falls back to F16."""
    import gguf

    T = gguf.GGMLQuantizationType
    if float32 or len(shape) <= 1 or name.endswith("_norm.weight"):
        return T.F32
    qtype = _ggml_type(outtype)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    return qtype if shape[-1] % block == 0 else T.F16


def _nbytes(shape: tuple[int, ...], qtype) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = 1
    for d in shape:
        n *= d
    return n // block * size


def _encode(data, qtype):
    import gguf
    import numpy as np

    arr = data.detach().contiguous().numpy().astype(np.float32, copy=False)
    T = gguf.GGMLQuantizationType
    if qtype == T.F32:
        return arr
    if qtype == T.F16:
        return arr.astype(np.float16)
    return gguf.quants.quantize(arr, qtype)


def convert(
    source: Path,
    output: Path,
    cfg: GgufExportConfig = GgufExportConfig(),
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """Write `output` from the checkpoint in `source`; returns the conversion figures."""
    import gguf
    import numpy as np
    import torch

    from edgeinfer.exporters.gguf.tokenizer import write_vocab

    start = time.perf_counter()
    config = read_config(source)
    architecture = config["architectures"][0]
    ckpt = Checkpoint(source)
    if architecture not in FAMILIES and llamacpp_converts(architecture):
        check_tokenizer_files(source)
        return convert_with_llamacpp(
            source, output, cfg.outtype.value.lower(), cfg.adapter, architecture, ckpt.nbytes(), progress
        )
    family = family_for(architecture, config)(config)
    adapter = None
    if cfg.adapter:
        from edgeinfer.exporters.gguf.lora import LoraAdapter

        adapter = LoraAdapter(Path(cfg.adapter), {n: ckpt.shape(n) for n in ckpt.names()})

    # Plan: the same transforms on shape-only tensors give every output name, shape and type.
    plan: list[tuple[str, list[str]]] = []
    infos: list[tuple[str, tuple[int, ...], Any]] = []
    for hf_name, members in expert_groups(ckpt.names()):
        if family.skip(hf_name):
            continue
        plan.append((hf_name, members))
        meta = ckpt.meta(members[0])
        if len(members) > 1 or hf_name != members[0]:
            meta = meta.expand(len(members), *meta.shape)
        for name, t in family.tensors(hf_name, meta):
            shape = tuple(t.shape)
            infos.append((name, shape, tensor_type(name, shape, cfg.outtype, family.float32(name))))

    n_vocab = int(family.hparam("vocab_size"))
    writer = gguf.GGUFWriter(path=None, arch=family.arch_name)
    writer.add_name(config.get("_name_or_path") or source.resolve().name)
    family.write_hparams(writer)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(_file_type(cfg.outtype))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    vocab = write_vocab(writer, source, n_vocab)
    for name, shape, qtype in infos:
        writer.add_tensor_info(name, shape, np.dtype(np.float32), _nbytes(shape, qtype), raw_dtype=qtype)
    writer.write_header_to_file(path=output)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()

    types: dict[str, int] = {}
    i = 0
    try:
        for hf_name, members in plan:
            parts = [ckpt.load(m) for m in members]
            if adapter is not None:
                parts = [adapter.merge(m, part) for m, part in zip(members, parts, strict=True)]
            data = parts[0] if hf_name == members[0] else torch.stack(parts)
            del parts
            for name, t in family.tensors(hf_name, data):
                _, shape, qtype = infos[i]
                if tuple(t.shape) != shape:
                    raise RuntimeError(f"{name}: planned {shape}, got {tuple(t.shape)}")
                writer.write_tensor_data(_encode(t, qtype))
                types[qtype.name] = types.get(qtype.name, 0) + 1
                i += 1
                progress.advance(i, len(infos), name)
    finally:
        writer.close()
    return {
        "architecture": architecture,
        "gguf_architecture": family.arch_name,
        "outtype": cfg.outtype.value.lower(),
        "tensors": len(infos),
        "tensor_types": types,
        "tokenizer": vocab,
        "source_bytes": ckpt.nbytes(),
        "converter": "edgeinfer",
        "seconds": round(time.perf_counter() - start, 2),
        **({"adapter": adapter.config} if adapter else {}),
    }
