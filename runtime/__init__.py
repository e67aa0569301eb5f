"""Runners: one per backend (ONNX Runtime, llama.cpp), each reporting what really ran the work.

A requested provider that is unavailable is an error, or an explicit, printed and recorded
fallback when the caller allows it; never a silent one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ProviderReport:
    """What the runtime actually used, as opposed to what was asked for."""

    requested: list[str]
    used: list[str]
    fallbacks: list[str] = field(default_factory=list)
    # provider -> {"nodes": n, "ops": {op_type: n}}, from ONNX Runtime's profiler.
    placement: dict[str, dict] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.placement:
            return ", ".join(self.used)
        total = sum(p["nodes"] for p in self.placement.values()) or 1
        parts = []
        for ep, p in self.placement.items():
            # A provider that compiles subgraphs (QNN, TensorRT) shows one fused node per partition.
            fused = sum(n for op, n in p["ops"].items() if op.startswith(ep))
            what = f"{fused} compiled partition(s)" if fused == p["nodes"] else f"{p['nodes']} node(s)"
            parts.append(f"{ep.removesuffix('ExecutionProvider')} {what} ({100 * p['nodes'] / total:.0f}%)")
        return ", ".join(parts)
