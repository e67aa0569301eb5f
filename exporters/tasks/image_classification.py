"""An image-classification head's logits, from pixel_values with a dynamic batch axis."""

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import image_inputs

register_task(
    ExportTask(
        name="image-classification",
        auto_class="AutoModelForImageClassification",
        architectures=("ForImageClassification",),
        outputs=("logits",),
        inputs=image_inputs,
    )
)
