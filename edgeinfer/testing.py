"""pytest helpers: assert in a user's own test suite what `edgeinfer check` asserts in CI.

from edgeinfer.testing import assert_within_budget

def test_int8_model_is_still_good():
    assert_within_budget("fp32.onnx", "int8.onnx", data="eval.npz", max_drop=0.01)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def assert_within_budget(
    baseline: str | Path,
    candidate: str | Path,
    data: str,
    *,
    task: str = "auto",
    max_drop: float | None = None,
    min_cosine: float | None = None,
    min_agreement: float | None = None,
    max_slowdown: float | None = None,
    min_speedup: float | None = None,
    max_size_mb: float | None = None,
    runs: int = 20,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Compare the two models on `data`; raise AssertionError listing every broken budget.

    Returns the comparison report (the same JSON `edgeinfer compare --json` prints).
    """
    from edgeinfer.pipelines.compare import Budget, EvalTask, check_budget, compare_models

    budget = Budget(
        max_drop=max_drop,
        min_cosine=min_cosine,
        min_agreement=min_agreement,
        max_slowdown=max_slowdown,
        min_speedup=min_speedup,
        max_size_mb=max_size_mb,
    )
    if budget == Budget():
        raise ValueError(
            "give at least one budget (max_drop, min_cosine, min_agreement, max_slowdown, min_speedup, max_size_mb)"
        )
    report = compare_models(
        Path(baseline),
        [Path(candidate)],
        data,
        task=EvalTask(task),
        runs=runs,
        batch_size=batch_size,
    )
    problems = check_budget(report, budget)
    if problems:
        raise AssertionError("; ".join(problems))
    return report.to_dict()
