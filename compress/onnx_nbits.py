"""Importance-aware weight-only quantization of an LLM's ONNX MatMuls into MatMulNBits, and of its
tied embedding into GatherBlockQuantized.

onnxruntime's own weight-only quantizers round each block to a symmetric grid (RTN) or need an
extra package for GPTQ; neither takes an importance matrix. Here each block of `block_size`
weights gets an asymmetric grid (scale + integer zero point) chosen by a small search that
minimises the squared error weighted, per column, by the mean square of the activations that
multiply it (llama.cpp's `imatrix` rule: importance x sqrt(row variance + w^2)), the scale then
refitted by weighted least squares. The plan says which weights keep 8 bits (the output head, which
the embedding shares, and llama.cpp's Q4_K_M choice of down-projections), and each node's
accuracy level (int8 activations on 4-bit nodes, where the CPU kernels are fastest).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.compress.imatrix import weighted_error
from edgeinfer.core.errors import InputError

_ROWS = 2048  # rows quantized at once: bounds the search's temporary arrays to ~100 MB
_STEPS = np.linspace(-1.0, 1.0, 21)  # grid widths tried around (max - min) / qmax, as llama.cpp's make_qkx


@dataclass(frozen=True)
class NodePlan:
    """How one weight is stored: bits (4 or 8), weights per block (each block has a float32 scale
    and a zero point: 1.1 bits per weight at 32, 0.3 at 128) and MatMulNBits' accuracy_level
    (4: int8 activations, the fast CPU kernels; 0: the kernel's float path)."""

    bits: int
    block: int = 32
    accuracy_level: int = 4


def widest_block(width: int, block: int) -> int:
    """The widest block, `block` halved down to 16 at the least, that divides a row of `width`."""
    while block > 16 and width % block:
        block //= 2
    return block


def quantize_blocks(
    w: np.ndarray, importance: np.ndarray | None, bits: int, block: int, *, search: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize rows w [N, K] in blocks of `block` along K (`search=False`: the one grid spanning
    each block, scale refitted, 20x faster; what a quick estimate of the damage needs).

    Returns (q uint8 [N, K // block, block], scales float32 [N, K // block], zero points uint8
    [N, K // block]) with w ~ (q - zero) * scale.
    """
    n, k = w.shape
    if k % block:
        raise InputError(f"a weight with {k} input features does not split into blocks of {block}")
    qmax = float(2**bits - 1)
    imp = np.ones(k, np.float32) if importance is None else np.asarray(importance, np.float32)
    q_all = np.empty((n, k // block, block), np.uint8)
    s_all = np.empty((n, k // block), np.float32)
    z_all = np.empty((n, k // block), np.uint8)
    for r0 in range(0, n, _ROWS):
        x = np.asarray(w[r0 : r0 + _ROWS], np.float32)
        sigma2 = (x * x).mean(axis=1, keepdims=True)
        weight = (imp[None, :] * np.sqrt(sigma2 + x * x)).reshape(len(x), -1, block)
        x = x.reshape(len(x), -1, block)
        lo = np.minimum(x.min(-1, keepdims=True), 0.0)  # zero stays exactly representable
        hi = np.maximum(x.max(-1, keepdims=True), 0.0)
        span = np.maximum(hi - lo, 1e-12)
        best_err = np.full(lo.shape, np.inf, np.float32)
        best_q = np.zeros(x.shape, np.float32)
        best_s = np.zeros(lo.shape, np.float32)
        best_z = np.zeros(lo.shape, np.float32)
        for step in _STEPS if search else (0.0,):
            iscale = (qmax + step) / span
            z = np.clip(np.round(-lo * iscale), 0, qmax)
            q = np.clip(np.round(x * iscale) + z, 0, qmax)
            d = q - z
            den = (weight * d * d).sum(-1, keepdims=True)
            s = np.where(den > 0, (weight * x * d).sum(-1, keepdims=True) / np.maximum(den, 1e-30), 1.0 / iscale)
            err = (weight * (x - s * d) ** 2).sum(-1, keepdims=True)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_q = np.where(better, q, best_q)
            best_s = np.where(better, s, best_s)
            best_z = np.where(better, z, best_z)
        q_all[r0 : r0 + _ROWS] = best_q.astype(np.uint8)
        s_all[r0 : r0 + _ROWS] = best_s[..., 0]
        z_all[r0 : r0 + _ROWS] = best_z[..., 0].astype(np.uint8)
    return q_all, s_all, z_all


def gptq_blocks(
    w: np.ndarray, hessian: np.ndarray, bits: int, block: int, damp: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPTQ (Frantar et al., 2022): quantize rows w [N, K] one input column at a time, each
    column's rounding error spread over the columns not yet quantized through the inverse of the
    activations' Gram matrix `hessian` [K, K] (X^T X over the calibration tokens), so the layer's
    output, not its weights, stays close. Each block's grid (scale, zero) is chosen by
    quantize_blocks, weighted by the Gram diagonal, when the block is reached.

    Returns what quantize_blocks returns.
    """
    n, k = w.shape
    if k % block:
        raise InputError(f"a weight with {k} input features does not split into blocks of {block}")
    qmax = float(2**bits - 1)
    W = np.array(w, dtype=np.float32)
    H = np.array(hessian, dtype=np.float64)
    dead = np.diag(H) <= 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H[np.diag_indices(k)] += damp * float(np.mean(np.diag(H)))
    # The upper Cholesky factor of H^-1: row c holds how column c's error moves the columns after it.
    U = np.linalg.cholesky(np.linalg.inv(H)).T.astype(np.float32)
    diag = np.diag(H).astype(np.float32)
    q_all = np.empty((n, k // block, block), np.uint8)
    s_all = np.empty((n, k // block), np.float32)
    z_all = np.empty((n, k // block), np.uint8)
    for b, b0 in enumerate(range(0, k, block)):
        _, scale, zero = quantize_blocks(W[:, b0 : b0 + block], diag[b0 : b0 + block], bits, block)
        s, z = scale[:, 0], zero[:, 0].astype(np.float32)
        safe = np.where(s == 0, 1.0, s)
        errors = np.empty((n, block), np.float32)
        for j in range(block):
            c = b0 + j
            q = np.clip(np.round(W[:, c] / safe) + z, 0, qmax)
            q_all[:, b, j] = q
            err = (W[:, c] - (q - z) * s) / U[c, c]
            W[:, c + 1 : b0 + block] -= np.outer(err, U[c, c + 1 : b0 + block])
            errors[:, j] = err
        W[:, b0 + block :] -= errors @ U[b0 : b0 + block, b0 + block :]
        s_all[:, b], z_all[:, b] = s, z.astype(np.uint8)
    return q_all, s_all, z_all


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack uint8 values of `bits` bits along the last axis, low bits first (MatMulNBits' layout)."""
    if bits == 8:
        return values
    if bits != 4:
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros((*values.shape[:-1], 1), np.uint8)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def dequantize(q: np.ndarray, scales: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """(q - zero) * scale, back to rows [N, K]."""
    out = (q.astype(np.float32) - zeros[..., None]) * scales[..., None]
    return out.reshape(q.shape[0], -1)


def matmul_weights(model: Any) -> dict[str, Any]:
    """The MatMul nodes whose second input is a 2-D float initializer, by that initializer's name."""
    inits = {i.name: i for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
            found[node.input[1]] = node
    return found


@dataclass
class ActivationStats:
    """Per MatMul weight: the mean square of the activations multiplying each of its K rows
    (`importance`), and where they fitted the memory budget their Gram matrices X^T X / tokens."""

    importance: dict[str, np.ndarray]
    gram: dict[str, np.ndarray]
    tokens: int


MAX_GRAM_BYTES = 3 << 30  # Gram matrices are K x K per distinct activation: 2 GB is a 7B model's layers


def probe_session(model: Any, model_path: Path, purpose: str) -> Any:
    """A CPU session over `model`, an edited copy of the graph at `model_path` (extra outputs or
    inputs), saved beside the external data it names for ONNX Runtime to read, then removed."""
    import onnx
    import onnxruntime as ort

    probe = model_path.parent / f".{model_path.stem}.{purpose}.onnx"
    onnx.save(model, str(probe))
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        return ort.InferenceSession(str(probe), options, providers=["CPUExecutionProvider"])
    finally:
        probe.unlink(missing_ok=True)


def activation_stats(model_path: Path, feeds: Iterable[dict[str, np.ndarray]], *, gram: bool = True) -> ActivationStats:
    """Run the float model on each feed and collect, per MatMul weight, statistics of the
    activations that multiply it over every token: exact for this graph."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    nodes = matmul_weights(model)
    if not nodes:
        raise InputError(f"{model_path.name} has no MatMul with a constant weight to calibrate")
    acts = sorted({node.input[0] for node in nodes.values()})
    outputs = {o.name for o in model.graph.output}
    for name in acts:
        if name not in outputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = probe_session(model, model_path, "calibration")
    sums: dict[str, np.ndarray] = {}
    grams: dict[str, np.ndarray] = {}
    count = 0
    for feed in feeds:
        values = [np.asarray(v, np.float32) for v in session.run(acts, feed)]
        if gram and not grams and sum(v.shape[-1] ** 2 * 8 for v in values) > MAX_GRAM_BYTES:
            gram = False  # GPTQ's statistics would not fit: importance only
        for name, value in zip(acts, values, strict=True):
            flat = value.reshape(-1, value.shape[-1])
            sq = np.einsum("tk,tk->k", flat, flat, dtype=np.float64)
            sums[name] = sums[name] + sq if name in sums else sq
            if gram:
                g = (flat.T @ flat).astype(np.float64)
                grams[name] = grams[name] + g if name in grams else g
        count += int(np.prod(values[0].shape[:-1]))
    if not count:
        raise InputError("no calibration tokens were run")
    return ActivationStats(
        {weight: (sums[node.input[0]] / count).astype(np.float32) for weight, node in nodes.items()},
        {weight: grams[node.input[0]] / count for weight, node in nodes.items() if node.input[0] in grams},
        count,
    )


def quantize_model(
    model: Any,
    plan: dict[str, NodePlan],
    importance: dict[str, np.ndarray],
    *,
    gram: dict[str, np.ndarray] | None = None,
    embedding: str | None = None,
) -> list[dict[str, Any]]:
    """Rewrite `model` (a loaded ModelProto with its weights) in place: every MatMul whose weight is
    in `plan` becomes MatMulNBits, quantized by GPTQ where `gram` has its Gram matrix, else by the
    importance-weighted grid search; when `embedding` names a Gather of the transposed output-head
    weight (a tied embedding), it becomes a GatherBlockQuantized over the head's blocks.

    Returns one row per weight: name, bits, importance-weighted relative error.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes = matmul_weights(model)
    rows: list[dict[str, Any]] = []
    replaced: dict[str, tuple[str, str, str, NodePlan]] = {}  # weight -> (packed, scales, zeros, plan)
    for weight, node_plan in plan.items():
        node = nodes.get(weight)
        if node is None:
            raise InputError(f"no MatMul uses the weight {weight}")
        w = numpy_helper.to_array(inits[weight]).astype(np.float32).T  # ONNX B is [K, N]; blocks run along K
        imp = importance.get(weight)
        if gram and weight in gram:
            q, scales, zeros = gptq_blocks(w, gram[weight], node_plan.bits, node_plan.block)
        else:
            q, scales, zeros = quantize_blocks(w, imp, node_plan.bits, node_plan.block)
        n, k = w.shape
        packed = pack(q, node_plan.bits)
        names = (f"{weight}_Q{node_plan.bits}", f"{weight}_scales", f"{weight}_zero_points")  # the builder's names
        graph.initializer.extend(
            [
                numpy_helper.from_array(packed, names[0]),
                numpy_helper.from_array(scales, names[1]),
                numpy_helper.from_array(pack(zeros, node_plan.bits), names[2]),
            ]
        )
        new = onnx.helper.make_node(
            "MatMulNBits",
            [node.input[0], *names],
            list(node.output),
            name=node.name + f"_Q{node_plan.bits}",
            domain="com.microsoft",
            K=k,
            N=n,
            bits=node_plan.bits,
            block_size=node_plan.block,
            accuracy_level=node_plan.accuracy_level,
        )
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(index, new)
        replaced[weight] = (names[0], names[1], names[2], node_plan)
        rows.append(
            {
                "weight": weight,
                "bits": node_plan.bits,
                "accuracy_level": node_plan.accuracy_level,
                "error": weighted_error(w, dequantize(q, scales, zeros), imp),
            }
        )
    if embedding is not None:
        _tie_embedding(model, embedding, replaced)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:  # the float weights replaced
        graph.initializer.remove(init)
    return rows


def _tie_embedding(model: Any, head: str, replaced: dict[str, tuple[str, str, str, NodePlan]]) -> None:
    """Gather(Transpose(head)) -> GatherBlockQuantized over the head's quantized blocks, shared."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    if head not in replaced:
        raise InputError(f"the tied embedding's weight {head} is not quantized by the plan")
    packed, scales, zeros, head_plan = replaced[head]
    transposes = {n.output[0]: n for n in graph.node if n.op_type == "Transpose" and n.input[0] == head}
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in transposes]
    if len(gathers) != 1:
        raise InputError(f"expected one Gather of the transposed {head}, found {len(gathers)}")
    gather, transpose = gathers[0], transposes[gathers[0].input[0]]
    init = {i.name: i for i in graph.initializer}
    data = numpy_helper.to_array(init[packed])
    rows = data.shape[0]
    flat = f"{packed}_rows"
    graph.initializer.append(numpy_helper.from_array(np.array([rows, -1], np.int64), flat + "_shape"))
    reshape = onnx.helper.make_node("Reshape", [packed, flat + "_shape"], [flat], name=gather.name + "_rows")
    new = onnx.helper.make_node(
        "GatherBlockQuantized",
        [flat, gather.input[1], scales, zeros],
        list(gather.output),
        name=gather.name + "_Quantized",
        domain="com.microsoft",
        bits=head_plan.bits,
        block_size=head_plan.block,
        gather_axis=0,
        quantize_axis=1,
    )
    index = list(graph.node).index(gather)
    graph.node.remove(gather)
    graph.node.remove(transpose)
    graph.node.insert(min(index, len(graph.node)), reshape)
    graph.node.insert(min(index + 1, len(graph.node)), new)


def quantize_embedding(model: Any, block: int = 32) -> dict[str, Any] | None:
    """An untied embedding (Gather of a 2-D float initializer by `input_ids`) -> an 8-bit
    GatherBlockQuantized, rows quantized in blocks along the hidden axis. Returns its row for the
    report, or None when the model has no such Gather."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    inputs = {i.name for i in graph.input}
    gather = next(
        (n for n in graph.node if n.op_type == "Gather" and n.input[0] in inits and n.input[1] in inputs
         and len(inits[n.input[0]].dims) == 2),
        None,
    )  # fmt: skip
    if gather is None:
        return None
    table = numpy_helper.to_array(inits[gather.input[0]]).astype(np.float32)  # [vocab, hidden]
    block = widest_block(table.shape[1], block)
    q, scales, zeros = quantize_blocks(table, None, 8, block)
    name = gather.input[0]
    graph.initializer.extend(
        [
            numpy_helper.from_array(q.reshape(table.shape[0], -1), f"{name}_Q8"),
            numpy_helper.from_array(scales, f"{name}_scales"),
            numpy_helper.from_array(zeros, f"{name}_zero_points"),
        ]
    )
    new = onnx.helper.make_node(
        "GatherBlockQuantized",
        [f"{name}_Q8", gather.input[1], f"{name}_scales", f"{name}_zero_points"],
        list(gather.output),
        name=gather.name + "_Quantized",
        domain="com.microsoft",
        bits=8,
        block_size=block,
        gather_axis=0,
        quantize_axis=1,
    )
    index = list(graph.node).index(gather)
    graph.node.remove(gather)
    graph.node.insert(index, new)
    if not any(name in n.input for n in graph.node):
        graph.initializer.remove(inits[name])
    return {"weight": name, "bits": 8, "accuracy_level": None,
            "error": weighted_error(table, dequantize(q, scales, zeros), None)}  # fmt: skip
