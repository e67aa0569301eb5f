"""The example inputs that tasks share, by modality: tokenized sentences for text models, synthetic
pictures through the image processor for image models."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from edgeinfer.exporters.tasks import InputOptions, TaskInputs

# Sentences of different lengths, so the padded batches really pad.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Edge devices run small models.",
    "Quantization trades a little accuracy for a lot of speed, and we measure how little.",
    "Hi",
    "A Raspberry Pi 5 has four Cortex-A76 cores and up to eight gigabytes of memory.",
    "ONNX Runtime picks an execution provider for every node of the graph.",
]


def text_inputs(
    model: Any,
    config: dict,
    path: Path,
    batch: tuple[int, int],
    options: InputOptions = InputOptions(),
    drop: tuple[str, ...] = (),
) -> TaskInputs:
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
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        ids = [example["input_ids"].numpy(), second["input_ids"].numpy()] if "input_ids" in second else []
        for batch_ids in ids or [example["input_ids"].numpy()]:
            check_tokens_are_real(tokenizer, batch_ids, path, vocab if isinstance(vocab, int) else None)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    return TaskInputs(names, example, second, axes, tokenizer_dir=str(path.resolve()))


def synthetic_images(n: int, size: int = 96, seed: int = 0):
    """`n` different RGB pictures (PIL): smooth colour gradients with a few shapes, so a processor's
    resize, crop and normalisation see picture-like statistics rather than noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 1, (3, 3))
        img = np.stack([a[i] * xx + b[i] * yy + c[i] * xx * yy for i in range(3)], -1)
        for _ in range(3):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.25)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(0, 1, 3)
        images.append(Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)))
    return images


def image_inputs(
    model: Any, config: dict, path: Path, batch: tuple[int, int], options: InputOptions = InputOptions()
) -> TaskInputs:
    """pixel_values of synthetic pictures through the folder's image processor (its size, crop and
    normalisation); without one, standard-normal pixels at --image-size."""
    import torch

    from edgeinfer.core.hf_folder import load_image_processor

    processor = load_image_processor(path, required=options.image_size is None)
    if processor is None:
        height, width = options.image_size or (0, 0)
        channels = config.get("num_channels") or (config.get("vision_config") or {}).get("num_channels") or 3
        gen = torch.Generator().manual_seed(0)
        example = {"pixel_values": torch.randn(batch[0], channels, height, width, generator=gen)}
        second = {"pixel_values": torch.randn(batch[1], channels, height, width, generator=gen)}
    else:

        def pixels(n: int, seed: int):
            out = processor(images=synthetic_images(n, seed=seed), return_tensors="pt")
            return {"pixel_values": out["pixel_values"].float()}

        example, second = pixels(batch[0], 0), pixels(batch[1], 1)
    return TaskInputs(["pixel_values"], example, second, {"pixel_values": {0: "batch"}})


def features_inputs(
    model: Any, config: dict, path: Path, batch: tuple[int, int], options: InputOptions = InputOptions()
) -> TaskInputs:
    """A base model's inputs by modality: its declaration's (exporters/architectures), else what its
    forward takes: pixel_values for a vision encoder (ViT, DINOv2, the CLIP vision tower: no
    tokenizer needed), raw waveforms (input_values) for a speech encoder (Wav2Vec2, HuBERT, WavLM),
    else the folder's tokenizer on sentences."""
    from edgeinfer.exporters.architectures import Modality, architecture_for

    declared = architecture_for(config)
    if declared is not None:
        modality = declared.modality
    else:
        accepted = set(inspect.signature(model.forward).parameters)
        if "input_ids" in accepted:
            modality = Modality.TEXT
        elif "input_values" in accepted:
            modality = Modality.AUDIO
        else:
            modality = Modality.IMAGE if "pixel_values" in accepted else Modality.TEXT
    if modality is Modality.AUDIO:
        return audio_inputs(model, config, path, batch, options)
    if modality is Modality.IMAGE:
        return image_inputs(model, config, path, batch, options)
    return text_inputs(model, config, path, batch, options)


def audio_inputs(
    model: Any, config: dict, path: Path, batch: tuple[int, int], options: InputOptions = InputOptions()
) -> TaskInputs:
    """input_values (and attention_mask where the model takes it) of synthetic voiced clips through
    the folder's feature extractor (Wav2Vec2, HuBERT, WavLM): raw waveforms, normalised, padded to
    the longest clip, so the two batches differ in length and the graph's time axis is dynamic."""
    import torch

    from edgeinfer.core.audio import synthetic_clips
    from edgeinfer.core.hf_folder import load_feature_extractor

    fe = load_feature_extractor(path)
    rate = int(getattr(fe, "sampling_rate", 16_000))
    accepted = set(inspect.signature(model.forward).parameters)
    names = [n for n in getattr(fe, "model_input_names", ["input_values"]) if n in accepted] or ["input_values"]
    if "input_values" not in names:
        from edgeinfer.core.errors import InputError

        raise InputError(
            f"{path / 'preprocessor_config.json'} makes {', '.join(names)}; this task takes raw waveforms "
            "(input_values): it is another model's feature extractor"
        )

    def features(n: int, seconds: float, seed: int):
        clips = synthetic_clips(n, seconds, rate, seed=seed)
        out = fe(clips, sampling_rate=rate, padding=True, return_tensors="np", return_attention_mask=True)
        return {k: torch.from_numpy(out[k].astype("float32" if k == "input_values" else "int64")) for k in names}

    axes = {n: {0: "batch", 1: "samples"} for n in names}
    return TaskInputs(names, features(batch[0], 1.0, 0), features(batch[1], 0.6, 1), axes)


def with_output_axes(build, axes: dict[str, dict[int, str]]):
    """`build` (one of the input builders above) with the graph's output axes named, for heads whose
    outputs have more dynamic axes than the batch (per token, per frame)."""

    def inputs(
        model: Any, config: dict, path: Path, batch: tuple[int, int], options: InputOptions = InputOptions()
    ) -> TaskInputs:
        built = build(model, config, path, batch, options)
        built.output_axes = axes
        return built

    return inputs


def per_token(*outputs: str):
    """Text inputs, each of `outputs` having a row per token ([batch, sequence, ...])."""
    return with_output_axes(text_inputs, {name: {0: "batch", 1: "sequence"} for name in outputs})
