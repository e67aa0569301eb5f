"""edgeinfer's INT4 recipe for ONNX Runtime GenAI folders: the model builder writes the float
graph, then compress.onnx_nbits quantizes its weights with a mixed plan, importance-aware when a
calibration text is given.

The plan follows llama.cpp's Q4_K_M placement: the output head (which a tied embedding shares)
and, in the first and last eighth of the layers and every third between, the down-projections and
the attention input projections keep 8 bits; everything else is 4-bit, asymmetric, in blocks of
`block_size`. Every node computes with int8 activations (accuracy level 4), the CPU's fast kernels:
on SmolLM2 a float-activation 8-bit head generated 20x slower at the same KL.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.errors import InputError
from edgeinfer.core.progress import QUIET, Progress

log = logging.getLogger(__name__)

RECIPES = ("edgeinfer", "builder")
MAX_CHUNKS = 64  # GPTQ's Hessians need fewer tokens than an importance matrix (imatrix.MAX_CHUNKS)
_LAYER = re.compile(r"layers\.(\d+)\.")


def more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third between."""
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def mixed_plan(widths: dict[str, int], n_layers: int, block: int) -> dict[str, Any]:
    """Bits and block size per MatMul weight, given each weight's input width K (see the module's
    docstring)."""
    from edgeinfer.compress.onnx_nbits import NodePlan, widest_block

    plan = {}
    for name, k in widths.items():
        match = _LAYER.search(name)
        if match is None:  # the output head: 8 bits, in the widest block its width allows
            plan[name] = NodePlan(8, 64 if k % 64 == 0 else 32)
        elif more_bits(int(match.group(1)), n_layers) and any(p in name for p in ("down_proj", "qkv_proj", "v_proj")):
            plan[name] = NodePlan(8, 32)
        else:
            plan[name] = NodePlan(4, widest_block(k, block))  # a narrow layer: a block that divides it
    return plan


def calibration_feeds(folder: Path, token_chunks: list[list[int]]) -> Iterator[dict[str, np.ndarray]]:
    """The decoder's inputs for each chunk of token ids run from an empty KV cache."""
    decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    names = decoder["inputs"]
    empty = np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]), np.float32)
    for ids in token_chunks:
        feed = {
            names["input_ids"]: np.array([ids], np.int64),
            names["attention_mask"]: np.ones((1, len(ids)), np.int64),
        }
        for layer in range(decoder["num_hidden_layers"]):
            feed[names["past_key_names"] % layer] = empty
            feed[names["past_value_names"] % layer] = empty
        yield feed


def token_chunks(source: Path, text: str) -> list[list[int]]:
    """The calibration text as the Hugging Face folder's tokenizer cuts it (pipelines.imatrix)."""
    from edgeinfer.core.hf_folder import load_tokenizer
    from edgeinfer.pipelines.imatrix import CHUNK_SIZE, calibration_chunks

    return calibration_chunks(load_tokenizer(source, pad_with_eos=False), text, CHUNK_SIZE, MAX_CHUNKS)


def quantize_folder(
    float_folder: Path,
    output: Path,
    *,
    block_size: int,
    chunks: list[list[int]] | None,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """Write into `output` the GenAI folder `float_folder` (the builder's FP32) with its weights
    quantized by the mixed plan; with `chunks` (token ids), GPTQ on the activations' statistics.

    Returns the recipe as the sidecar records it, with every weight's bits and error.
    """
    import onnx

    from edgeinfer.compress.onnx_nbits import activation_stats, matmul_weights, quantize_model
    from edgeinfer.core.formats import load_onnx

    decoder = json.loads((float_folder / "genai_config.json").read_text())["model"]["decoder"]
    model_file = float_folder / decoder["filename"]
    model = load_onnx(model_file, load_external_data=True)
    if not matmul_weights(model):
        raise InputError(
            f"{float_folder.name} has no float MatMul weights to quantize (already quantized?); start from "
            "its FP32 folder (export --precision fp32)"
        )
    stats = None
    if chunks:
        progress.stage(f"calibrating on {sum(map(len, chunks))} tokens")
        stats = activation_stats(model_file, calibration_feeds(float_folder, chunks))
    inits = {i.name: i for i in model.graph.initializer}
    widths = {name: int(inits[name].dims[0]) for name in matmul_weights(model)}  # ONNX B is [K, N]
    plan = mixed_plan(widths, int(decoder["num_hidden_layers"]), block_size)
    progress.stage(
        f"quantizing {len(plan)} weights ({'GPTQ' if stats and stats.gram else 'importance' if stats else 'grid search'})"
    )
    head = _tied_head(model)
    rows = quantize_model(
        model,
        plan,
        stats.importance if stats else {},
        gram=stats.gram if stats else None,
        embedding=head,
    )
    if head is None:  # an untied embedding table: 8 bits, as llama.cpp's Q4_K_M keeps token_embd near
        from edgeinfer.compress.onnx_nbits import quantize_embedding

        embedding_row = quantize_embedding(model)
        if embedding_row is not None:
            rows.append(embedding_row)
    output.mkdir(parents=True, exist_ok=True)
    for f in float_folder.iterdir():
        if f.is_file() and not f.name.startswith(decoder["filename"]):
            shutil.copy2(f, output / f.name)
    onnx.save(
        model,
        str(output / decoder["filename"]),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=decoder["filename"] + ".data",
    )
    bits = {b: sum(r["bits"] == b for r in rows) for b in sorted({r["bits"] for r in rows})}
    return {
        "recipe": "edgeinfer",
        "method": "gptq" if stats and stats.gram else "importance" if stats else "weighted-grid",
        "calibration_tokens": stats.tokens if stats else 0,
        "bits": {str(b): n for b, n in bits.items()},
        "tied_embedding": head is not None,
        "weights": rows,
    }


def _tied_head(model: Any) -> str | None:
    """The output head's weight when the embedding is a Gather of its transpose (tied), else None."""
    from edgeinfer.compress.onnx_nbits import matmul_weights

    weights = matmul_weights(model)
    transposed = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Transpose"}
    for node in model.graph.node:
        if node.op_type == "Gather" and transposed.get(node.input[0]) in weights:
            return transposed[node.input[0]]
    return None
