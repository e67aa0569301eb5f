"""A masked-language-model head (BERT's MLM): vocabulary logits per token, for fill-mask."""

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import per_token

register_task(
    ExportTask(
        name="fill-mask",
        auto_class="AutoModelForMaskedLM",
        architectures=("ForMaskedLM",),
        outputs=("logits",),
        inputs=per_token("logits"),
    )
)
