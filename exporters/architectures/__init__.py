"""The export registry per architecture: for each Hugging Face `model_type`, the tasks it exports
as, the modality its example inputs come from, and what is known about exporting it.

A declaration is a few lines in the file of its kind (text, vision, multimodal, encoder-decoder);
`tests/exporters/test_architectures.py` fails for a declared architecture without a tiny model
that exports each of its tasks. A `model_type` nobody declared still exports through its task
(the export says so); a declared one asked for a task it does not have is refused, listing its
tasks, before anything is loaded.

Modalities and their example inputs (exporters/tasks/_inputs.py):
- text: the folder's own tokenizer on padded sentences;
- image: synthetic pictures through the folder's image processor (its size and normalisation);
- text+image: both, each with its own batch axis (dual encoders);
- audio: synthetic voiced clips through the folder's feature extractor (log-mel frames).
Diffusion models have no `model_type`; exporters/diffusion.py declares its classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from edgeinfer.core.errors import ConfigError
from edgeinfer.core.registry import Registry


class Modality(str, Enum):
    TEXT = "text"
    IMAGE = "image"
    TEXT_IMAGE = "text+image"
    AUDIO = "audio"


@dataclass(frozen=True)
class Architecture:
    """How one `model_type` exports.

    Args:
        model_type: config.json's `model_type`.
        modality: where its example inputs come from (see the module docstring).
        tasks: the export tasks it has, the first being its default.
        torchscript_first: why `--exporter auto` tries TorchScript before torch.export for it (a
            measured speed difference of ONNX Runtime on the two graphs); empty: torch.export first.
    """

    model_type: str
    modality: Modality
    tasks: tuple[str, ...]
    torchscript_first: str = ""


_ARCHITECTURES: Registry[Architecture] = Registry("architecture", __name__)


def declare(model_type: str, modality: Modality, *tasks: str, torchscript_first: str = "") -> Architecture:
    """Add one architecture to the registry (its kind's file calls this on import)."""
    arch = Architecture(model_type, modality, tasks, torchscript_first)
    _ARCHITECTURES.add(model_type, arch)
    return arch


def architectures() -> dict[str, Architecture]:
    """Every declared architecture by model_type."""
    return _ARCHITECTURES.all()


def architecture_for(config: dict[str, Any]) -> Architecture | None:
    """The declaration for a folder's config.json, or None when its model_type has none."""
    return architectures().get(str(config.get("model_type")))


def check_task(config: dict[str, Any], task: str) -> Architecture | None:
    """The folder's declaration, after checking it has `task`; a task it lacks is refused."""
    arch = architecture_for(config)
    if arch is not None and task not in arch.tasks:
        raise ConfigError(
            f"a {arch.model_type} model exports as {', '.join(arch.tasks)}, not {task}; "
            f"pass --task {arch.tasks[0]} (or leave --task out)"
        )
    return arch
