"""Dynamic INT8: weights quantized ahead of time, activations at run time (transformer encoders)."""

from __future__ import annotations

from typing import Any

from edgeinfer.compress.onnx_quant import QuantJob, ort_qtype, register_method


@register_method(
    "dynamic",
    precision="int8",
    search=(("int8-dynamic", {"per_channel": True}), ("int8-dynamic-per-tensor", {"per_channel": False})),
)
def dynamic(job: QuantJob) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    cfg = job.config
    quantize_dynamic(
        str(job.model_path),
        str(job.output),
        per_channel=cfg.per_channel,
        reduce_range=cfg.reduce_range,
        weight_type=ort_qtype(cfg.weight_type),
        nodes_to_exclude=job.excluded,
        # Fused contrib ops (Attention, SkipLayerNormalization after optimize-graph) defeat ONNX's
        # shape inference, and ONNX Runtime then refuses to guess the tensors' type: they are float.
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return {}
