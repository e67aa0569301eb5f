"""An object-detection head (DETR, YOLOS, ...): per query, class logits (the last class is "no
object") and a box (centre x, centre y, width, height, relative to the image)."""

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import image_inputs

register_task(
    ExportTask(
        name="object-detection",
        auto_class="AutoModelForObjectDetection",
        architectures=("ForObjectDetection",),
        outputs=("logits", "pred_boxes"),
        inputs=image_inputs,  # queries are a fixed count: only the batch axis is dynamic
    )
)
