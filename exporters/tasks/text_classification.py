"""A sequence-classification head's logits."""

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import text_inputs

register_task(
    ExportTask(
        name="text-classification",
        auto_class="AutoModelForSequenceClassification",
        architectures=("ForSequenceClassification",),
        outputs=("logits",),
        inputs=text_inputs,
    )
)
