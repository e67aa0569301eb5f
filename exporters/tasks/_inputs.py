"""The example inputs that tasks share: tokenized sentences for text models, random pixels for images."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from edgeinfer.exporters.tasks import TaskInputs

# Sentences of different lengths, so the padded batches really pad.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Edge devices run small models.",
    "Quantization trades a little accuracy for a lot of speed, and we measure how little.",
    "Hi",
    "A Raspberry Pi 5 has four Cortex-A76 cores and up to eight gigabytes of memory.",
    "ONNX Runtime picks an execution provider for every node of the graph.",
]


def text_inputs(model: Any, config: dict, path: Path, batch: tuple[int, int], drop: tuple[str, ...] = ()) -> TaskInputs:
    """The folder's own tokenizer on padded sentence batches, fed as every input the model accepts."""
    from edgeinfer.core.hf_folder import check_tokens_are_real, load_tokenizer

    tokenizer = load_tokenizer(path)
    accepted = set(inspect.signature(model.forward).parameters)
    names = [n for n in tokenizer.model_input_names if n in accepted and n not in drop]

    def encode(sentences):
        enc = tokenizer(sentences, padding=True, return_tensors="pt")
        return {n: enc[n] for n in names}

    example = encode(SENTENCES[: batch[0]])
    second = encode(SENTENCES[batch[0] : batch[0] + batch[1]])
    if "input_ids" in example:
        check_tokens_are_real(tokenizer, example["input_ids"].numpy(), path)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    return TaskInputs(names, example, second, axes, tokenizer_dir=str(path.resolve()))


def image_inputs(model: Any, config: dict, path: Path, batch: tuple[int, int]) -> TaskInputs:
    """Seeded random pixel_values at the config's image size and channel count."""
    import torch

    vision = config.get("vision_config") or {}  # a multimodal config nests the image settings
    size = config.get("image_size") or vision.get("image_size") or 224
    size = size if isinstance(size, int) else size[0]
    channels = config.get("num_channels") or vision.get("num_channels") or 3
    gen = torch.Generator().manual_seed(0)
    example = {"pixel_values": torch.randn(batch[0], channels, size, size, generator=gen)}
    second = {"pixel_values": torch.randn(batch[1], channels, size, size, generator=gen)}
    return TaskInputs(["pixel_values"], example, second, {"pixel_values": {0: "batch"}})


def features_inputs(model: Any, config: dict, path: Path, batch: tuple[int, int]) -> TaskInputs:
    """A base model's inputs by modality: pixel_values for a vision encoder (ViT, DINOv2, the CLIP
    vision tower: no tokenizer needed), else the folder's tokenizer on sentences."""
    accepted = set(inspect.signature(model.forward).parameters)
    if "pixel_values" in accepted and "input_ids" not in accepted:
        return image_inputs(model, config, path, batch)
    return text_inputs(model, config, path, batch)
