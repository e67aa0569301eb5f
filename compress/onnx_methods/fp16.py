"""FP16: every float tensor in half precision; the model's inputs and outputs stay float32."""

from __future__ import annotations

from typing import Any

from edgeinfer.compress.onnx_quant import QuantJob, register_method


@register_method("fp16", precision="fp16", search=(("fp16", {}),), after_graph=False)
def fp16(job: QuantJob) -> dict[str, Any]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(job.model, keep_io_types=True, node_block_list=job.excluded or None)
    onnx.save(half, str(job.output))
    return {}
