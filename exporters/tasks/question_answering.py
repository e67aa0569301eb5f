"""An extractive question-answering head: the start and end logits of the answer span, per token."""

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import per_token

register_task(
    ExportTask(
        name="question-answering",
        auto_class="AutoModelForQuestionAnswering",
        architectures=("ForQuestionAnswering",),
        outputs=("start_logits", "end_logits"),
        inputs=per_token("start_logits", "end_logits"),
    )
)
