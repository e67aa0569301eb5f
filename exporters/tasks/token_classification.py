"""A token-classification head's logits, one row of labels per token (NER, POS tagging)."""

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import per_token

register_task(
    ExportTask(
        name="token-classification",
        auto_class="AutoModelForTokenClassification",
        architectures=("ForTokenClassification",),
        outputs=("logits",),
        inputs=per_token("logits"),
    )
)
