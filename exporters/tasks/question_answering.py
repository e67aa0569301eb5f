"""An extractive question-answering head: the start and end logits of the answer span, per token."""

from edgeinfer.exporters.tasks import ExportTask, TaskInputs, register_task
from edgeinfer.exporters.tasks._inputs import text_inputs


def _inputs(*args, **kwargs) -> TaskInputs:
    inputs = text_inputs(*args, **kwargs)
    inputs.output_axes = {name: {0: "batch", 1: "sequence"} for name in ("start_logits", "end_logits")}
    return inputs


register_task(
    ExportTask(
        name="question-answering",
        auto_class="AutoModelForQuestionAnswering",
        architectures=("ForQuestionAnswering",),
        outputs=("start_logits", "end_logits"),
        inputs=_inputs,
    )
)
