"""The base model's hidden states: sentence embeddings are pooled from a text encoder's downstream;
image encoders (ViT, DINOv2, the CLIP vision tower) take pixel_values and need no tokenizer."""

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import features_inputs

register_task(
    ExportTask(
        name="feature-extraction",
        auto_class="AutoModel",
        architectures=("Model",),
        outputs=("last_hidden_state",),
        inputs=features_inputs,
    )
)
