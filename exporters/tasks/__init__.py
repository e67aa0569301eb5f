"""Export tasks: which head a Hugging Face folder is loaded with, and what the export takes and gives.

One file per task registers an `ExportTask`; `export --task NAME` and the inference of the task
from config.json's architecture name both read the registry, so a new task is one file here plus
its tiny model in tests/exporters/test_export_tasks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import ConfigError
from edgeinfer.core.registry import Registry


@dataclass
class TaskInputs:
    """Named example inputs (two different sets, so validation sees two shapes) and their dynamic axes."""

    names: list[str]
    example: dict[str, Any]  # name -> torch.Tensor
    second: dict[str, Any]
    dynamic_axes: dict[str, dict[int, str]]
    tokenizer_dir: str | None = None
    output_axes: dict[str, dict[int, str]] = field(default_factory=dict)  # default: axis 0 is the batch
    head: dict[str, Any] = field(default_factory=dict)  # what scoring the head needs (CTC: blank, word delimiter)


@dataclass(frozen=True)
class InputOptions:
    """What the user may say about example inputs the folder cannot.

    Args:
        image_size: (height, width) of the example images when the folder has no image processor
            (preprocessor_config.json); pixels are then standard-normal, not a processed picture.
    """

    image_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class ExportTask:
    """How one task exports from a Hugging Face folder.

    Args:
        name: the `--task` value, recorded in the sidecar.
        auto_class: the transformers Auto class that loads the folder with this task's head.
        architectures: architecture-name suffixes (config.json `architectures`) that mean this task;
            matched longest first, so a generic suffix such as "Model" never shadows a specific one.
        outputs: the model outputs the ONNX graph returns, in order.
        inputs: builds the example inputs from (loaded model, config dict, folder, (batch, second
            batch), InputOptions).
        prepare: adjusts the loaded model before export (a causal LM drops its KV cache).
        parts: the files a multi-graph task writes into its output folder (seq2seq: encoder and
            decoder); empty for a task that is one .onnx file.
    """

    name: str
    auto_class: str
    architectures: tuple[str, ...]
    outputs: tuple[str, ...]
    inputs: Callable[[Any, dict, Path, tuple[int, int], InputOptions], TaskInputs]
    prepare: Callable[[Any], None] | None = field(default=None, compare=False)
    parts: tuple[str, ...] = ()


_TASKS: Registry[ExportTask] = Registry("export task", __name__)


def register_task(task: ExportTask) -> ExportTask:
    """Add `task` to the registry (each task file calls this once, on import)."""
    _TASKS.add(task.name, task)
    return task


def tasks() -> dict[str, ExportTask]:
    """Every registered export task by name."""
    return _TASKS.all()


def get_task(name: str) -> ExportTask:
    """The task called `name`; an unknown name fails listing the registered ones."""
    known = tasks()
    if name not in known:
        raise ConfigError(f"unknown export task {name!r} (valid: {', '.join(sorted(known))})")
    return known[name]


# `...ForConditionalGeneration` models that are not text encoder-decoders, by architecture prefix:
# what they are, so the refusal names it instead of transformers' "Unrecognized configuration class".
NOT_EXPORTED = {
    "Speech2Text": "a speech-to-text encoder-decoder over filterbank features (edgeinfer exports Whisper, "
    "as speech-seq2seq)",
    "Blip": "an image-captioning / visual question answering model (a vision encoder feeding a text decoder)",
    "InstructBlip": "a vision-language model (a vision encoder and Q-Former feeding an LLM)",
    "Llava": "a vision-language model (a vision encoder feeding an LLM)",
    "Qwen2VL": "a vision-language model (a vision encoder feeding an LLM)",
    "Qwen2_5_VL": "a vision-language model (a vision encoder feeding an LLM)",
    "PaliGemma": "a vision-language model (a vision encoder feeding an LLM)",
    "Idefics": "a vision-language model (a vision encoder feeding an LLM)",
    "Mllama": "a vision-language model (a vision encoder feeding an LLM)",
    "Gemma3ForConditionalGeneration": "a vision-language model (Gemma 3 with its SigLIP vision tower)",
    "Pix2Struct": "an image-to-text model (screenshots and documents)",
    "VisionEncoderDecoder": "an image-to-text model (a vision encoder feeding a text decoder)",
}


# Variants of an exported architecture, told apart by config.json, that the ONNX trace cannot keep:
# (model_type, config key, value) -> why.
NOT_EXPORTED_VARIANTS = {
    ("longt5", "encoder_attention_type", "transient-global"): (
        "LongT5 with transient-global attention: the number of global blocks follows the input length, "
        "which tracing fixes at the length traced, so the graph fails on other lengths; edgeinfer exports "
        'LongT5 with local attention (encoder_attention_type "local")'
    ),
}


def refuse_unexported(architecture: str, config: dict | None = None) -> None:
    """Refuse an architecture NOT_EXPORTED names, saying what it is, whatever --task asks for (BLIP
    loaded as feature-extraction would fail as "incomplete": its weights are not a bare model's),
    and a variant NOT_EXPORTED_VARIANTS names from its `config`."""
    config = config or {}
    for (model_type, key, value), why in NOT_EXPORTED_VARIANTS.items():
        if config.get("model_type") == model_type and config.get(key) == value:
            from edgeinfer.core.errors import UnsupportedError

            raise UnsupportedError(f"{architecture or model_type} is {why}")
    what = next((w for prefix, w in NOT_EXPORTED.items() if architecture.startswith(prefix)), None)
    if what is not None:
        from edgeinfer.core.errors import UnsupportedError

        raise UnsupportedError(
            f"{architecture} is {what}; edgeinfer does not export it yet (image-to-text and vision-language "
            f"generation, other speech models). Its export tasks: {', '.join(sorted(tasks()))}"
        )


def infer_task(architecture: str, default: str = "feature-extraction") -> ExportTask:
    """The task an architecture name means (`BertForSequenceClassification` -> text-classification).

    A name with a task head no registered task exports (`RobertaForTokenClassification`,
    `DetrForObjectDetection`, `...LMHeadModel`) is refused naming the head: exported as
    `default` it would lose the head without a word. A bare model (`BertModel`) is `default`."""
    refuse_unexported(architecture)
    by_suffix = sorted(
        ((suffix, task) for task in tasks().values() for suffix in task.architectures), key=lambda st: -len(st[0])
    )
    found = next((task for suffix, task in by_suffix if architecture.endswith(suffix)), None)
    if found is not None:
        return found
    head = head_of(architecture)
    if head:
        from edgeinfer.core.errors import UnsupportedError, option

        raise UnsupportedError(
            f"{architecture} has a task head ({head}) that edgeinfer does not export yet (its tasks: "
            f"{', '.join(sorted(tasks()))}); exporting it as {default} would drop the head. Pass "
            f"{option('task', default)} to export the model without its head, on purpose"
        )
    return get_task(default)


def head_of(architecture: str) -> str | None:
    """The task head an architecture name carries, in words ("token classification"), or None."""
    import re

    parts = re.split(r"For(?=[A-Z])", architecture, maxsplit=1)  # not the "For" of Mask2Former
    if len(parts) == 2:
        name = parts[1]
    elif architecture.endswith(("LMHeadModel", "WithLMHead")):
        name = "LMHead"
    else:
        return None
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z0-9]*", name)
    return " ".join(w if w.isupper() else w.lower() for w in words) or None
