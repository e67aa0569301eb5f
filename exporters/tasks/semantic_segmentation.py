"""A semantic-segmentation head (SegFormer, ...): class logits per pixel of the model's output map,
[batch, classes, height, width] (often a quarter of the input's size; upsample to the picture)."""

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import image_inputs

register_task(
    ExportTask(
        name="semantic-segmentation",
        auto_class="AutoModelForSemanticSegmentation",
        architectures=("ForSemanticSegmentation",),
        outputs=("logits",),
        inputs=image_inputs,
    )
)
