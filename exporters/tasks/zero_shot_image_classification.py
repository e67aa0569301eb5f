"""Zero-shot image classification with a dual encoder (CLIP, SigLIP): both towers in one graph,
labels as tokenized texts and images as pixel_values, each with its own batch axis; the graph gives
the image-label logits and both embeddings."""

from pathlib import Path
from typing import Any

from edgeinfer.core.data import SHARED_AXIS
from edgeinfer.exporters.tasks import ExportTask, InputOptions, TaskInputs, register_task
from edgeinfer.exporters.tasks._inputs import image_inputs, text_inputs


def _texts_and_images(
    model: Any, config: dict, path: Path, batch: tuple[int, int], options: InputOptions
) -> TaskInputs:
    text = text_inputs(model, config, path, batch, options)
    image = image_inputs(model, config, path, (batch[0] + 1, batch[1] + 1), options)  # not as many images as labels
    # The label texts' axis name is what tells compare's data loader to give every batch all of them.
    axes = {**{n: {0: SHARED_AXIS, 1: "sequence"} for n in text.names}, "pixel_values": {0: "images"}}
    return TaskInputs(
        [*text.names, "pixel_values"],
        {**text.example, **image.example},
        {**text.second, **image.second},
        axes,
        tokenizer_dir=text.tokenizer_dir,
        output_axes={
            "logits_per_image": {0: "images", 1: SHARED_AXIS},
            "text_embeds": {0: SHARED_AXIS},
            "image_embeds": {0: "images"},
        },
    )


register_task(
    ExportTask(
        name="zero-shot-image-classification",
        auto_class="AutoModel",
        architectures=("CLIPModel", "SiglipModel"),
        outputs=("logits_per_image", "text_embeds", "image_embeds"),
        inputs=_texts_and_images,
    )
)
