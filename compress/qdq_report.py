"""Where a QDQ model loses accuracy: SQNR of every quantized activation against the float graph.

Built on onnxruntime.quantization.qdq_loss_debug; lower SQNR (dB) means more quantization noise.
"""

from __future__ import annotations

import math
from pathlib import Path

from edgeinfer.core.io import scratch_dir


def activation_sqnr(float_model: Path, qdq_model: Path, batches, max_batches: int = 4) -> list[dict]:
    """[{tensor, node, op_type, sqnr_db}] sorted worst first, on the first `max_batches` batches."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from edgeinfer.compress.calibration import BatchReader

    sample = list(batches)[:max_batches]
    with scratch_dir("sqnr") as tmp:
        f_aug, q_aug = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        modify_model_output_intermediate_tensors(str(float_model), str(f_aug))
        modify_model_output_intermediate_tensors(str(qdq_model), str(q_aug))
        f_act = collect_activations(str(f_aug), BatchReader(sample))
        q_act = collect_activations(str(q_aug), BatchReader(sample))
    errors = compute_activation_error(create_activation_matching(dict(q_act), dict(f_act)))
    producers = {out: node for node in onnx.load(str(float_model)).graph.node for out in node.output}
    rows = []
    for tensor, err in errors.items():
        sqnr = float(err.get("xmodel_err", math.inf))
        node = producers.get(tensor)
        rows.append(
            {
                "tensor": tensor,
                "node": node.name if node else None,
                "op_type": node.op_type if node else None,
                "sqnr_db": sqnr,
            }
        )
    return sorted(rows, key=lambda r: r["sqnr_db"])
