"""edgeinfer's INT4 recipe for ONNX Runtime GenAI folders: the model builder writes the float
graph, then compress.onnx_nbits quantizes its weights with a mixed plan, importance-aware when a
calibration text is given.

Without a calibration text the plan follows llama.cpp's Q4_K_M placement: the output head (which a
tied embedding shares) and, in the first and last eighth of the layers and every third between, the
down-projections and the attention input projections keep 8 bits; everything else is 4-bit,
asymmetric, in blocks of `block_size`. With one, the head keeps 8 bits and the bytes that placement
spends on the layers are placed by each weight's measured damage instead (compress.onnx_nbits_plan:
4 bits in blocks of 2x, 1x or 0.5x `block_size`, or 8 bits), then GPTQ quantizes every weight as
planned. Every node computes with int8 activations (accuracy level 4), the CPU's fast kernels: on
SmolLM2 a float-activation 8-bit head generated 20x slower at the same KL.
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
SENSITIVITY_TOKENS = 128  # one run per weight: enough to rank them (SmolLM2: 150 runs, about a minute)
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


# The names onnxruntime-genai gives the decoder's inputs and outputs when genai_config.json omits them.
_DEFAULT_NAMES = {
    "input_ids": "input_ids",
    "attention_mask": "attention_mask",
    "past_key_names": "past_key_values.%d.key",
    "past_value_names": "past_key_values.%d.value",
    "logits": "logits",
}


def decoder_names(decoder: dict[str, Any]) -> dict[str, str]:
    """The decoder's input and output names from its genai_config.json section, as onnxruntime-genai
    reads them (its defaults where the file names none)."""
    given = {**(decoder.get("inputs") or {}), **(decoder.get("outputs") or {})}
    names = {key: given.get(key, default) for key, default in _DEFAULT_NAMES.items()}
    for key, value in names.items():
        if not isinstance(value, str) or (key.startswith("past_") and value.count("%d") != 1):
            raise InputError(f"genai_config.json names the decoder's {key} {value!r}; export the model again")
    return names


def calibration_feeds(folder: Path, token_chunks: list[list[int]]) -> Iterator[dict[str, np.ndarray]]:
    """The decoder's inputs for each chunk of token ids run from an empty KV cache."""
    decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    names = decoder_names(decoder)
    shape = [decoder.get(key) for key in ("num_key_value_heads", "head_size", "num_hidden_layers")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 16 for v in shape):
        raise InputError(
            "genai_config.json gives the decoder no num_key_value_heads, head_size and num_hidden_layers "
            "the KV cache can take; export the model again"
        )
    heads, head_size, layers = shape
    empty = np.zeros((1, heads, 0, head_size), np.float32)
    for ids in token_chunks:
        feed = {
            names["input_ids"]: np.array([ids], np.int64),
            names["attention_mask"]: np.ones((1, len(ids)), np.int64),
        }
        for layer in range(layers):
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
    layer_bytes: int | None = None,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """Write into `output` the GenAI folder `float_folder` (the builder's FP32) with its weights
    quantized by the mixed plan; with `chunks` (token ids), the layers' bits placed by measured
    sensitivity within `layer_bytes` (default: what llama.cpp's Q4_K_M rule spends on them) and
    GPTQ on the activations' statistics.

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
    shapes = {name: (int(inits[name].dims[0]), int(inits[name].dims[1])) for name in matmul_weights(model)}  # [K, N]
    plan = mixed_plan({name: k for name, (k, _) in shapes.items()}, int(decoder["num_hidden_layers"]), block_size)
    placement: dict[str, Any] = {"by": "llama.cpp's Q4_K_M rule"}
    if chunks and stats is not None:
        placement = _place_by_sensitivity(
            float_folder, decoder, chunks[0], stats, plan, shapes, block_size, layer_bytes, progress
        )
        plan.update(placement.pop("plan"))
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
    kl_alone = placement.pop("kl_4bit_alone", {})
    for row in rows:
        if row["weight"] in kl_alone:
            row["kl_4bit_alone"] = kl_alone[row["weight"]]
    bits = {b: sum(r["bits"] == b for r in rows) for b in sorted({r["bits"] for r in rows})}
    return {
        "recipe": "edgeinfer",
        "method": "gptq" if stats and stats.gram else "importance" if stats else "weighted-grid",
        "calibration_tokens": stats.tokens if stats else 0,
        "bits": {str(b): n for b, n in bits.items()},
        "tied_embedding": head is not None,
        "placement": placement,
        "weights": rows,
    }


def _place_by_sensitivity(
    folder: Path,
    decoder: dict[str, Any],
    chunk: list[int],
    stats: Any,
    rule: dict[str, Any],
    shapes: dict[str, tuple[int, int]],
    block_size: int,
    layer_bytes: int | None,
    progress: Progress,
) -> dict[str, Any]:
    """The layers' weights placed by their measured damage within `layer_bytes`, by default the
    bytes `rule` spends on them."""
    from edgeinfer.compress.onnx_nbits_plan import allocate, measure_sensitivity, plan_bytes, summary

    layers = [name for name in rule if _LAYER.search(name)]
    tokens = chunk[:SENSITIVITY_TOKENS]
    progress.stage(f"measuring what 4 bits cost each of {len(layers)} weights, on {len(tokens)} tokens")
    feed = next(calibration_feeds(folder, [tokens]))
    options = measure_sensitivity(
        folder / decoder["filename"],
        feed,
        decoder_names(decoder)["logits"],
        layers,
        stats.importance,
        block_size,
        advance=progress.advance,
    )
    budget = layer_bytes or plan_bytes({name: rule[name] for name in layers}, shapes)
    plan = allocate(options, budget)
    return {
        "by": "measured sensitivity",
        "tokens": len(tokens),
        "budget_bytes": budget,
        "bytes": plan_bytes(plan, shapes),
        **summary(options, plan),
        "plan": plan,
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
