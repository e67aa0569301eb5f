"""INT4 weight-only: MatMul weights in blocks of `block_size` as MatMulNBits (LLM-style)."""

from __future__ import annotations

from typing import Any

from edgeinfer.compress.onnx_quant import QuantJob, register_method
from edgeinfer.core.errors import InputError, option


# Weight-only: MatMul weights in 4-bit blocks; the graph keeps float activations.
@register_method("int4", precision="int4", search=(("int4-weight-only", {}),))
def int4(job: QuantJob) -> dict[str, Any]:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    cfg = job.config
    quantizer = MatMulNBitsQuantizer(
        job.model,
        bits=4,
        block_size=cfg.block_size,
        is_symmetric=cfg.symmetric,
        nodes_to_exclude=job.excluded,
        accuracy_level=4,
    )
    quantizer.process()
    quantized: Any = quantizer.model  # an ONNXModel wrapper once process() ran
    n = sum(1 for node in quantized.model.graph.node if node.op_type == "MatMulNBits")
    if n == 0:
        raise InputError(
            f"{job.model_path.name} has no MatMul with a constant weight that int4 can quantize "
            f"(int4 is weight-only for MatMul; try {option('method', 'static')} or dynamic)"
        )
    quantized.save_model_to_file(str(job.output), use_external_data_format=False)
    return {"matmulnbits_nodes": n}
