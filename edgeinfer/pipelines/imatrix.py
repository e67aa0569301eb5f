"""Importance matrices from a calibration text, computed once per model and text and kept in the cache.

The model is read from the GGUF itself by transformers (its weights dequantized to float32, so an
F16 or BF16 file gives the exact activations llama.cpp sees, up to its own rounding), the text is
split into chunks of `chunk_size` tokens each opened by BOS as `llama-imatrix` does, and the
squared inputs of every linear layer are summed under the GGUF name of its weight.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from edgeinfer.compress.imatrix import Imatrix, collect, read_imatrix, write_imatrix
from edgeinfer.core.errors import ConfigError, InputError
from edgeinfer.core.progress import QUIET, Progress

log = logging.getLogger(__name__)

CHUNK_SIZE = 512  # llama-imatrix's default context
MIN_TOKENS = 64  # fewer calibration tokens than this say nothing about a layer's inputs
MAX_CHUNKS = 256  # 131k tokens: llama.cpp's guidance is a few hundred chunks at most
_VERSION = 1  # bump when what is collected changes, so old cache entries are not reused


def _cache_path(model: Path, text: str, chunk_size: int) -> Path:
    from edgeinfer.core.cache import cache_dir
    from edgeinfer.core.io import sha256_file

    key = hashlib.sha256(
        f"{_VERSION}\0{sha256_file(model)}\0{chunk_size}\0".encode() + text.encode("utf-8")
    ).hexdigest()[:24]
    return cache_dir() / "imatrix" / f"{key}.gguf"


def gguf_tensor_names(model: Path) -> tuple[Any, dict[str, list[int]]]:
    """The GGUF's architecture (gguf-py's MODEL_ARCH) and its tensors' ggml shapes by name."""
    import gguf

    from edgeinfer.core.formats import gguf_string, open_gguf

    reader = open_gguf(model)
    arch_name = gguf_string(reader, "general.architecture") or ""
    arch = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch_name)
    if arch is None:
        raise InputError(f"{model.name}: gguf-py knows no architecture {arch_name!r}; pass llama.cpp's --imatrix FILE")
    return arch, {t.name: [int(d) for d in t.shape] for t in reader.tensors}


def _name_mapper(model: Path, n_layers: int):
    """module name -> the GGUF weight it multiplies by (gguf-py's Hugging Face -> GGUF name map); the
    output projection of a model with tied embeddings is token_embd.weight, as in llama.cpp."""
    import gguf

    arch, shapes = gguf_tensor_names(model)
    names = gguf.get_tensor_name_map(arch, n_layers)

    def tensor_name(module_name: str, module: Any) -> str | None:
        base = names.get_name(module_name)
        if base is None:
            return None
        name = base + ".weight"
        if name not in shapes and base == "output":
            name = "token_embd.weight"
        shape = shapes.get(name)
        if shape is None or shape[0] != module.in_features:
            return None
        return name

    return tensor_name


def _load(model: Path, what: str):
    """transformers' tokenizer or model from the GGUF itself (no remote code, local files only)."""
    import torch
    import transformers

    from edgeinfer.core.stdio import captured_fd

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    big = model.stat().st_size > 4 << 30  # float32 weights of a >2B model do not fit beside the rest
    where = {"gguf_file": model.name, "local_files_only": True, "trust_remote_code": False}
    try:
        with captured_fd(2):  # transformers' GGUF reader draws its own tqdm bar, whatever its logging says
            if what == "tokenizer":
                return transformers.AutoTokenizer.from_pretrained(str(model.parent), **where)
            loaded = transformers.AutoModelForCausalLM.from_pretrained(
                str(model.parent), dtype=torch.bfloat16 if big else torch.float32, **where
            )
            return loaded.eval()
    except (ValueError, KeyError, OSError, NotImplementedError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise InputError(
            f"transformers cannot load {model.name} to compute an importance matrix ({first}); compute one with "
            "llama.cpp's llama-imatrix and pass it with --imatrix FILE"
        ) from None


def calibration_chunks(tokenizer: Any, text: str, chunk_size: int = CHUNK_SIZE, max_chunks: int = MAX_CHUNKS):
    """The text's token ids in chunks of `chunk_size`, each opened by BOS when the tokenizer has
    one, as llama-imatrix cuts its text; a last scrap under a quarter chunk is dropped."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    body = chunk_size - (1 if bos is not None else 0)
    if len(ids) < MIN_TOKENS:
        raise InputError(
            f"the calibration text is {len(ids)} tokens; give at least {MIN_TOKENS} (a few thousand is usual)"
        )
    chunks = [ids[i : i + body] for i in range(0, len(ids), body)][:max_chunks]
    if len(chunks) > 1 and len(chunks[-1]) < body // 4:
        chunks.pop()  # a scrap of a chunk mostly measures the start-of-text positions again
    return [([bos] if bos is not None else []) + c for c in chunks]


def importance_matrix(
    model: Path, calib: Path, *, chunk_size: int = CHUNK_SIZE, progress: Progress = QUIET
) -> tuple[Imatrix, Path, bool]:
    """The importance matrix of `model` (a GGUF) on the text in `calib`: from the cache when this
    model and text were seen before, else computed and cached.

    Returns (the imatrix, its file in llama.cpp's format, whether it came from the cache).
    """
    import torch

    from edgeinfer.core.cache import enforce_cap
    from edgeinfer.core.formats import read_text_file
    from edgeinfer.core.io import atomic_path

    if not 16 <= chunk_size <= 8192:
        raise ConfigError(f"chunk_size must be 16 ... 8192 tokens, got {chunk_size}")
    model = Path(model)
    text = read_text_file(calib, "calibration text")
    path = _cache_path(model, text, chunk_size)
    if path.is_file():
        return read_imatrix(path), path, True
    progress.stage(f"importance matrix: {model.name} on {Path(calib).name}")
    chunks = calibration_chunks(_load(model, "tokenizer"), text, chunk_size)
    loaded = _load(model, "model")
    n_layers = int(getattr(loaded.config, "num_hidden_layers", 0) or 0)
    entries = collect(
        loaded,
        (torch.tensor([c]) for c in chunks),
        _name_mapper(model, n_layers),
        total=len(chunks),
        progress=progress,
    )
    imatrix = Imatrix(entries, (Path(calib).name,), len(chunks), chunk_size)
    with atomic_path(path, overwrite=True) as tmp:
        write_imatrix(imatrix, tmp)
    enforce_cap(keep=path)
    log.info(f"importance matrix: {len(entries)} weights, {sum(map(len, chunks))} tokens -> {path}")
    return imatrix, path, False
