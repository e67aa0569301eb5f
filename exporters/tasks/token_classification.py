"""A token-classification head's logits, one row of labels per token (NER, POS tagging)."""

from edgeinfer.exporters.tasks import ExportTask, TaskInputs, register_task
from edgeinfer.exporters.tasks._inputs import text_inputs


def _inputs(*args, **kwargs) -> TaskInputs:
    inputs = text_inputs(*args, **kwargs)
    inputs.output_axes = {"logits": {0: "batch", 1: "sequence"}}
    return inputs


register_task(
    ExportTask(
        name="token-classification",
        auto_class="AutoModelForTokenClassification",
        architectures=("ForTokenClassification",),
        outputs=("logits",),
        inputs=_inputs,
    )
)
