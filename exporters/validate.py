"""Parity check of an ONNX file against its PyTorch source, on two different input shapes.

Every output of every case is compared; all mismatches are collected into one ValidationError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeinfer.core.errors import ValidationError, option

# Absolute tolerance by output dtype, before --atol overrides it; a relative term absorbs scale.
DEFAULT_ATOL = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2, "float64": 1e-7}
RTOL = 1e-3


@dataclass
class ValidationReport:
    """An export's parity with its source: per case, the input shapes and each output's figures
    (max / mean abs diff, cosine, the tolerance used); the worst of them; passed. `to_dict()` is
    what the sidecar's export step records as its metrics."""

    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_abs_diff: float = 0.0
    min_cosine: float = 1.0  # over the outputs that vary; a constant one proves nothing (below)
    passed: bool = False
    # Float outputs PyTorch gives as one value everywhere (all zeros: an untrained or zero-initialised
    # head) on every case: matching them checks nothing, so they are named rather than counted.
    constant_outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_arrays(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    ref64 = ref.astype(np.float64).ravel()
    got64 = got.astype(np.float64).ravel()
    diff = np.abs(ref64 - got64)
    denom = np.linalg.norm(ref64) * np.linalg.norm(got64)
    cosine = float(ref64 @ got64 / denom) if denom > 0 else float(np.array_equal(ref64, got64))
    return {
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "cosine": cosine,
        "ref_max_abs": float(np.abs(ref64).max()) if ref64.size else 0.0,
    }


class TensorRunner(Protocol):
    """The exported model as loaded by the runtime (edgeinfer.runtime.load; the pipeline loads it,
    so this subsystem never imports another): its inputs and `run(feeds) -> {output name: array}`."""

    path: Path

    @property
    def inputs(self) -> Any: ...

    def run(self, feeds: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]: ...


def validate_onnx(
    module, runner: TensorRunner, cases: dict[str, dict[str, Any]], output_names: list[str], atol: float | None = None
) -> ValidationReport:
    """Run `module` (PyTorch) and the exported graph (`runner`: loaded on the CPU by the caller) on
    each case; compare every output.

    Args:
        module: the source, taking the inputs positionally and returning a tuple of tensors.
        runner: the exported file, loaded; cases: case name -> named input tensors (two shapes, usually).
        output_names: the graph's outputs, in the module's order; atol: overrides DEFAULT_ATOL.

    Raises ValidationError listing every mismatch; returns the figures when all outputs agree.
    """
    import torch

    onnx_inputs = [i.name for i in runner.inputs]
    mismatches: list[str] = []
    report = ValidationReport()
    varies = {name: False for name in output_names}
    for case, inputs in cases.items():
        shape_note = " ".join(f"{n}{list(t.shape)}" for n, t in inputs.items())
        try:
            with torch.no_grad():
                ref = [
                    t.detach().float().numpy() if t.dtype == torch.bfloat16 else t.detach().numpy()
                    for t in module(*inputs.values())
                ]
        except Exception as e:
            mismatches.append(
                f"{case} ({shape_note}): the PyTorch source itself fails on this shape "
                f"({str(e).splitlines()[0][:160]}); export with {option('static_shapes', True)}"
            )
            continue
        feeds = {n: t.numpy() for n, t in inputs.items() if n in onnx_inputs}
        try:
            got = list(runner.run(feeds, check=False).values())
        except Exception as e:
            said = str(e).splitlines()[0] if str(e) else type(e).__name__
            mismatches.append(f"{case} ({shape_note}): the exported graph failed to run: {said[:200]}")
            continue
        case_figs = {"inputs": {n: list(t.shape) for n, t in inputs.items()}, "outputs": {}}
        for name, r, g in zip(output_names, ref, got):
            if r.shape != g.shape:
                mismatches.append(f"{case} {name}: shape {list(g.shape)} != PyTorch {list(r.shape)}")
                continue
            figs = compare_arrays(r, g)
            tol = atol if atol is not None else DEFAULT_ATOL.get(str(g.dtype), 1e-4)
            figs["atol"] = tol
            case_figs["outputs"][name] = figs
            report.max_abs_diff = max(report.max_abs_diff, figs["max_abs_diff"])
            constant = np.issubdtype(r.dtype, np.floating) and r.size > 1 and float(np.ptp(r)) == 0.0
            if not constant:
                varies[name] = True
                report.min_cosine = min(report.min_cosine, figs["cosine"])
            if np.issubdtype(g.dtype, np.floating):
                ok = np.allclose(g.astype(np.float64), r.astype(np.float64), atol=tol, rtol=RTOL)
            else:
                ok = np.array_equal(g, r)
            if not ok:
                mismatches.append(
                    f"{case} {name}: max abs diff {figs['max_abs_diff']:.3g} > atol {tol:g} "
                    f"(+rtol {RTOL:g}), cosine {figs['cosine']:.6f}"
                )
        report.cases[case] = case_figs
    if mismatches:
        raise ValidationError(f"export of {runner.path.name} does not match its PyTorch source", mismatches)
    report.constant_outputs = [
        n for n, v in varies.items() if not v and any(n in c["outputs"] for c in report.cases.values())
    ]
    report.passed = True
    return report
