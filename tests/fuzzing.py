"""Mutation fuzzing of the file checks: small real GGUF, ONNX and safetensors files, their header
regions mutated, fed to the loaders the CLI uses. Shared by the bounded CI test and the long
`benchmarks/fuzz.py` run.

The rule: a loader either accepts the file or raises an EdgeInferError; anything else (another
exception, a crash of a native library) is a finding.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# Extreme values written over 8-byte fields: counts, lengths, offsets, types.
EXTREMES = [0, 1, 7, 255, 2**16, 2**31 - 1, 2**32 - 1, 2**40, 2**62, 2**63 - 1, 2**64 - 1]


def tiny_llama_gguf(path: Path, edit_tokens=None, tokenizer_model: str = "llama") -> Path:
    """A complete, loadable Llama GGUF with random weights: 2 layers, 64 wide, a 300-token vocabulary.

    `edit_tokens(list)` may change the vocabulary first, `tokenizer_model` names another tokenizer
    (tests of the vocabulary checks)."""
    import gguf

    rng = np.random.default_rng(0)
    n_vocab, n_embd, n_ff, n_head, n_layer = 300, 64, 128, 4, 2
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("fuzz-tiny")
    w.add_context_length(128)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model(tokenizer_model)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + [f"\u2581t{i}" for i in range(41)]
    if edit_tokens is not None:
        edit_tokens(tokens)
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(41)])
    types = (
        [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
        + [gguf.TokenType.BYTE] * 256
        + [gguf.TokenType.NORMAL] * 41
    )
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def t(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    t("output.weight", n_vocab, n_embd)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            t(f"blk.{i}.{name}.weight", n_embd, n_embd)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def gguf_header_length(path: Path) -> int:
    """Bytes before the tensor data: the region whose values a loader trusts."""
    from gguf import GGUFReader

    return int(GGUFReader(str(path)).data_offset)


def tiny_safetensors(path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    save_file(
        {
            "a.weight": torch.randn(4, 8, generator=g),
            "b.bias": torch.randn(8, generator=g),
            "c.ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        },
        str(path),
    )
    return path


def safetensors_header_length(path: Path) -> int:
    with open(path, "rb") as fh:
        return 8 + struct.unpack("<Q", fh.read(8))[0]


# ---------------------------------------------------------------------------------- mutations


def mutations(st, size: int, region: int):
    """A hypothesis strategy of mutations of a `size`-byte file whose first `region` bytes are header."""
    region = max(min(region, size), 9)
    flips = st.tuples(
        st.just("flip"), st.lists(st.tuples(st.integers(0, region - 1), st.integers(0, 255)), min_size=1, max_size=8)
    )
    field = st.tuples(st.just("u64"), st.integers(0, region - 8), st.sampled_from(EXTREMES))
    field32 = st.tuples(st.just("u32"), st.integers(0, region - 4), st.sampled_from([e % 2**32 for e in EXTREMES]))
    cut = st.tuples(st.just("cut"), st.integers(0, size - 1))
    return st.lists(st.one_of(flips, field, field32, cut), min_size=1, max_size=3)


def apply(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op in ops:
        if op[0] == "flip":
            for pos, value in op[1]:
                if pos < len(buf):
                    buf[pos] = value
        elif op[0] in ("u64", "u32"):
            fmt, n = ("<Q", 8) if op[0] == "u64" else ("<I", 4)
            if op[1] + n <= len(buf):
                buf[op[1] : op[1] + n] = struct.pack(fmt, op[2])
        elif op[0] == "cut":
            del buf[op[1] :]
    return bytes(buf)


# ---------------------------------------------------------------------------------- loaders


def feed_gguf(path: Path) -> bool:
    """The GGUF gate every GGUF command passes (run, bench, quantize, compare): True if accepted."""
    from edgeinfer.runtime.llama import gguf_summary

    gguf_summary(path)
    return True


def feed_onnx(path: Path) -> bool:
    """What `quantize` and `run` / `bench` do first with an ONNX file."""
    from edgeinfer.core.formats import load_onnx
    from edgeinfer.runtime.ort import OrtRunner

    load_onnx(path)
    OrtRunner(path, profile_first_run=False)
    return True


def feed_safetensors(path: Path) -> bool:
    """What `export` checks in a model folder, then every tensor read as transformers would."""
    from safetensors import safe_open

    from edgeinfer.core.formats import read_safetensors_header

    entries = read_safetensors_header(path)
    with safe_open(str(path), framework="np") as fh:
        for name in entries:
            fh.get_tensor(name)
    return True


LLAMA_LOAD_SCRIPT = """
import sys
from pathlib import Path
from edgeinfer.core.errors import EdgeInferError
from edgeinfer.runtime.llama import LlamaRunner, LlamaSettings
loaded = refused = 0
for path in sorted(Path(sys.argv[1]).glob("*.gguf")):
    try:
        runner = LlamaRunner(path, LlamaSettings(n_ctx=64))
        runner.tokenize("hello")
        loaded += 1
    except EdgeInferError:
        refused += 1
print(loaded, refused)
"""
