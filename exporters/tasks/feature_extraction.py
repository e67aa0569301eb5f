"""The base model's hidden states (sentence embeddings are pooled from them downstream)."""

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import text_inputs

register_task(
    ExportTask(
        name="feature-extraction",
        auto_class="AutoModel",
        architectures=("Model",),
        outputs=("last_hidden_state",),
        inputs=text_inputs,
    )
)
