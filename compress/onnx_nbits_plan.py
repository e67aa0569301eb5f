"""Where an LLM's weight-only quantization spends its bits: each MatMul weight's damage to the
model's next-token distribution is measured, not guessed, and a byte budget goes where it buys the
most.

llama.cpp's Q4_K_M placement (more bits for the down and V projections of the first and last
layers and every third between) is a rule of thumb; on SmolLM2 the measured damage of a 4-bit
weight spans 100x (one layer's down projection alone costs more than twenty of its neighbours).
Here every weight is quantized to 4 bits on its own, the others left in float, and the KL
divergence of the model's next-token distribution from the float model's is measured on a slice
of the calibration text (quantized by plain rounding: the ranking needs the damage's size, not the
best grid). Each storage option (4 bits in wider or narrower blocks, 8 bits) is scored by that KL
scaled by its importance-weighted error (searched grids, on a sample of rows) relative to the
measured one, and the options
are chosen weight by weight, best KL saved per byte first, within the budget (a multiple-choice
knapsack solved greedily on each weight's lower convex hull).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.compress.imatrix import weighted_error
from edgeinfer.compress.onnx_nbits import (
    NodePlan,
    dequantize,
    matmul_weights,
    probe_session,
    quantize_blocks,
    widest_block,
)
from edgeinfer.core.errors import InputError

SAMPLE_ROWS = 128  # rows of a weight whose errors scale the measured KL to the other options


@dataclass(frozen=True)
class Option:
    plan: NodePlan
    bytes: int
    kl: float  # the model's KL divergence from float when this weight alone is stored so
    measured: bool = False  # the option whose KL was measured (by plain rounding; the others scale it)


def node_bytes(k: int, n: int, plan: NodePlan) -> int:
    """Bytes MatMulNBits stores for a [K, N] weight: packed values, float32 scales, packed zero points."""
    blocks = k // plan.block
    zeros = (blocks + 1) // 2 if plan.bits == 4 else blocks
    return n * (blocks * (plan.block * plan.bits // 8 + 4) + zeros)


def options_for(k: int, block: int) -> list[NodePlan]:
    """The ways a weight of input width `k` may be stored: 4 bits in blocks of twice, once and half
    `block`, 8 bits in blocks of 128 (8-bit error is small whatever the block; wide blocks keep its
    scales cheap). Blocks are narrowed until they divide the width."""
    plans = [NodePlan(4, widest_block(k, b)) for b in (2 * block, block, max(block // 2, 16))]
    plans.append(NodePlan(8, widest_block(k, 128)))
    return list(dict.fromkeys(plans))


def measure_sensitivity(
    model_path: Path,
    feed: dict[str, np.ndarray],
    logits: str,
    weights: list[str],
    importance: dict[str, np.ndarray],
    block: int,
    *,
    advance: Callable[[int, int], None] | None = None,
) -> dict[str, list[Option]]:
    """For each of `weights` (MatMul weight initializers of the float model at `model_path`), its
    storage options with the model's estimated KL divergence from float on `feed`'s tokens: the
    4-bit option in blocks of `block` is measured (that weight alone quantized), the others scaled
    from it by their importance-weighted error."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path), load_external_data=False)
    known = matmul_weights(model)
    missing = [w for w in weights if w not in known]
    if missing:
        raise InputError(f"no MatMul uses the weight {missing[0]}")
    inits = {i.name: i for i in model.graph.initializer}
    for name in weights:  # an initializer that is also a graph input can be replaced per run
        init = inits[name]
        model.graph.input.append(onnx.helper.make_tensor_value_info(name, init.data_type, list(init.dims)))
    session = probe_session(model, model_path, "sensitivity")
    base_dir = str(model_path.parent)

    def log_probs(extra: dict[str, np.ndarray]) -> np.ndarray:
        y = np.asarray(session.run([logits], {**feed, **extra})[0], np.float64)
        y = y.reshape(-1, y.shape[-1]) - y.max(-1).reshape(-1, 1)
        return y - np.log(np.exp(y).sum(-1, keepdims=True))

    reference = log_probs({})
    p = np.exp(reference)
    found: dict[str, list[Option]] = {}
    for i, name in enumerate(weights):
        w = numpy_helper.to_array(inits[name], base_dir=base_dir).astype(np.float32)  # [K, N]
        k, n = w.shape
        rows, imp = w.T, importance.get(name)
        measured = NodePlan(4, widest_block(k, block))
        approx = dequantize(*quantize_blocks(rows, imp, measured.bits, measured.block, search=False))
        kl = max(float((p * (reference - log_probs({name: np.ascontiguousarray(approx.T)}))).sum(-1).mean()), 0.0)
        every = max(1, n // SAMPLE_ROWS)
        sample = rows[::every]
        errors = {
            plan: weighted_error(sample, dequantize(*quantize_blocks(sample, imp, plan.bits, plan.block)), imp)
            for plan in options_for(k, block)
        }
        quick = weighted_error(sample, approx[::every], imp)
        found[name] = [
            Option(plan, node_bytes(k, n, plan), kl * error / quick if quick > 0 else 0.0, plan == measured)
            for plan, error in errors.items()
        ]
        if advance is not None:
            advance(i + 1, len(weights))
    return found


def allocate(options: dict[str, list[Option]], budget_bytes: int) -> dict[str, NodePlan]:
    """Per weight the option that, together, keeps the estimated KL (a sum over weights) lowest
    within `budget_bytes`: every weight starts at its smallest option and upgrades along its lower
    convex hull of (bytes, KL), the best KL saved per byte first, while the budget allows."""
    chosen: dict[str, Option] = {}
    steps: list[tuple[float, str, Option, Option]] = []
    spent = 0
    for name, opts in options.items():
        hull: list[Option] = []
        for o in sorted(opts, key=lambda o: (o.bytes, o.kl)):
            if hull and o.kl >= hull[-1].kl:
                continue  # more bytes for no less damage
            while len(hull) >= 2 and _above(hull[-2], hull[-1], o):
                hull.pop()
            hull.append(o)
        chosen[name] = hull[0]
        spent += hull[0].bytes
        steps += [((a.kl - b.kl) / (b.bytes - a.bytes), name, a, b) for a, b in zip(hull, hull[1:], strict=False)]
    if spent > budget_bytes:
        raise InputError(
            f"the smallest storage of these weights takes {spent:,} bytes, over the budget {budget_bytes:,}"
        )
    for _, name, a, b in sorted(steps, key=lambda s: -s[0]):
        if chosen[name] is a and spent + b.bytes - a.bytes <= budget_bytes:
            spent += b.bytes - a.bytes
            chosen[name] = b
    return {name: o.plan for name, o in chosen.items()}


def _above(a: Option, b: Option, c: Option) -> bool:
    """b lies on or above the line from a to c: not on the lower convex hull."""
    return (b.kl - a.kl) * (c.bytes - a.bytes) >= (c.kl - a.kl) * (b.bytes - a.bytes)


def plan_bytes(plan: dict[str, NodePlan], shapes: dict[str, tuple[int, int]]) -> int:
    return sum(node_bytes(*shapes[name], p) for name, p in plan.items())


def summary(options: dict[str, list[Option]], plan: dict[str, NodePlan]) -> dict[str, Any]:
    """What the sidecar records: the plan's estimated KL (a sum: it ranks plans, it does not predict
    the whole model's KL) and each weight's KL with it alone at 4 bits (searched grid, estimated)."""
    measured = {name: next(o.kl for o in opts if o.measured) for name, opts in options.items()}
    estimate = sum(next(o.kl for o in options[name] if o.plan == p) for name, p in plan.items() if name in options)
    return {"estimated_kl": estimate, "kl_4bit_alone": measured}
