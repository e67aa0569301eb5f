"""compare's metrics for task heads, on outputs built so the right figure is known by hand; the
tiny model of each head going through export, quantize and compare is in
tests/exporters/test_architectures.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeinfer.core.data import Batches
from edgeinfer.core.errors import ConfigError, InputError
from edgeinfer.pipelines import head_metrics as hm
from edgeinfer.pipelines.compare import (
    Budget,
    CompareRow,
    ComparisonReport,
    EvalTask,
    check_budget,
    metric_drop,
    resolve_task,
)


def _one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[labels]


def test_token_labels_are_compared_on_real_tokens_only():
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    data = Batches([{"input_ids": np.zeros((2, 4), np.int64), "attention_mask": mask}])
    base = _one_hot(np.array([[0, 1, 2, 0], [1, 1, 0, 0]]), 3)
    # The candidate differs on one real token (row 1, position 1) and on two padded ones.
    cand = _one_hot(np.array([[0, 1, 2, 2], [1, 2, 0, 2]]), 3)
    m = hm.token_metrics([[base]], [[cand]], data)
    assert m["agreement_with_baseline"] == pytest.approx(4 / 5)
    # Per class (baseline as truth): 0: F1 1; 1: tp 2, fn 1 -> 0.8; 2: tp 1, fp 1 -> 2/3.
    assert m["token_macro_f1"] == pytest.approx((1 + 0.8 + 2 / 3) / 3)
    assert hm.token_metrics([[base]], [[base]], data) == {"agreement_with_baseline": 1.0, "token_macro_f1": 1.0}


def test_fill_mask_counts_the_baseline_word_in_the_candidate_top_k():
    data = Batches([{"input_ids": np.zeros((1, 2), np.int64), "attention_mask": np.ones((1, 2), np.int64)}])
    base = np.array([[[0, 9, 1, 2, 3, 4, 5], [9, 0, 1, 2, 3, 4, 5]]], np.float32)  # top words 1 and 0
    cand = np.array([[[0, 8, 9, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 9]]], np.float32)  # 1 is 2nd; 0 is last
    m = hm.fill_mask_metrics([[base]], [[cand]], data, k=2)
    assert m == {"agreement_with_baseline": 0.0, "top2_contains_baseline": 0.5}


def test_answer_spans_keep_to_real_tokens_ordered_and_short():
    data = Batches([{"input_ids": np.zeros((1, 6), np.int64), "attention_mask": np.array([[1, 1, 1, 1, 1, 0]])}])
    start = np.array([[0, 5, 1, 0, 0, 9]], np.float32)  # the padded token's 9 must not win
    end = np.array([[0, 0, 4, 3, 0, 9]], np.float32)
    assert hm._best_span(start[0], end[0], data.batches[0]["attention_mask"][0].astype(bool)) == (1, 2)
    late_end = np.array([[6, 0, 0, 0, 0, 0]], np.float32)  # an end before every start is never chosen
    assert hm._best_span(np.array([-9, 0, 5, 0, 0, 0.0]), late_end[0], np.ones(6, bool)) == (2, 2)
    cand_end = np.array([[0, 0, 3, 4, 0, 9]], np.float32)  # the candidate ends one token later: (1, 3)
    m = hm.span_metrics([[start, end]], [[start, cand_end]], data)
    assert m["agreement_with_baseline"] == 0.0
    assert m["span_f1"] == pytest.approx(2 * 2 / (2 + 3))


def test_detections_match_by_query_class_and_box():
    # 2 queries, 2 classes + "no object": the baseline calls query 0 an object of class 1, query 1 nothing.
    base_logits = _one_hot(np.array([[1, 2]]), 3)
    cand_logits = _one_hot(np.array([[1, 0]]), 3)  # query 1 is now an object: class agreement 1/2
    box = np.array([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.4, 0.4]]], np.float32)
    shifted = box.copy()
    shifted[0, 0, 0] += 0.1  # half a box to the right: IoU 1/3
    shifted[0, 1] = [0.1, 0.1, 0.1, 0.1]  # the no-object query's box does not count
    m = hm.detection_metrics([[base_logits, box]], [[cand_logits, shifted]], Batches([]))
    assert m["agreement_with_baseline"] == 0.5
    assert m["box_iou_mean"] == pytest.approx(1 / 3)


def test_segmentation_scores_pixels_and_mean_iou():
    base = np.moveaxis(_one_hot(np.array([[[0, 0], [1, 1]]]), 2), -1, 1)  # [1, classes, 2, 2]
    cand = np.moveaxis(_one_hot(np.array([[[0, 1], [1, 1]]]), 2), -1, 1)
    m = hm.segmentation_metrics([[base]], [[cand]], Batches([]))
    assert m["agreement_with_baseline"] == 0.75
    assert m["miou_vs_baseline"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_ctc_transcripts_collapse_repeats_drop_blanks_and_count_word_errors():
    # Labels: 0 blank, 1 "|", 2 "A", 3 "B". Frames A A blank A | B -> "AA|B" as ids [2, 2, 1, 3].
    frames = np.array([2, 2, 0, 2, 1, 3])
    assert hm.ctc_decode(_one_hot(frames, 4), blank=0) == [2, 2, 1, 3]
    base = _one_hot(frames, 4)[None]
    cand = _one_hot(np.array([2, 2, 2, 2, 1, 3]), 4)[None]  # no blank: "A|B", first word wrong
    m = hm.transcription_metrics([[base]], [[cand]], Batches([]), delimiter=1, blank=0)
    assert m["agreement_with_baseline"] == 0.0
    assert m["wer_vs_baseline"] == 0.5  # 1 of 2 words
    assert m["cer_vs_baseline"] == 0.25  # 1 of 4 labels
    same = hm.transcription_metrics([[base]], [[base]], Batches([]), delimiter=1, blank=0)
    assert same == {"agreement_with_baseline": 1.0, "wer_vs_baseline": 0.0, "cer_vs_baseline": 0.0}


@pytest.mark.parametrize(
    ("exported", "task"),
    [
        ("token-classification", EvalTask.TOKENS),
        ("fill-mask", EvalTask.FILL_MASK),
        ("question-answering", EvalTask.SPAN),
        ("object-detection", EvalTask.DETECTION),
        ("semantic-segmentation", EvalTask.SEGMENTATION),
        ("ctc", EvalTask.TRANSCRIPTION),
    ],
)
def test_the_exported_head_picks_its_metric_and_refuses_classification(exported, task):
    data = Batches([{"x": np.zeros((2, 3), np.float32)}], labels=np.array([0, 1]))
    assert resolve_task(EvalTask.AUTO, data, {"task": exported}) is task
    with pytest.raises(InputError, match=f"--task {task.value}"):
        resolve_task(EvalTask.CLASSIFICATION, data, {"task": exported})


def test_a_head_metric_for_another_head_is_refused():
    data = Batches([{"x": np.zeros((2, 3), np.float32)}])
    with pytest.raises(
        InputError, match="--task span scores a question-answering export; the baseline is an export of ctc"
    ):
        resolve_task(EvalTask.SPAN, data, {"task": "ctc"})
    with pytest.raises(InputError, match="not a Hugging Face export"):
        resolve_task(EvalTask.DETECTION, data, {})


def _report(task: str, metrics: dict[str, float]) -> ComparisonReport:
    def row(model: str, m: dict[str, float]) -> CompareRow:
        return CompareRow(model, 1, {"p50": 1.0}, 1.0, (0.9, 1.1), m, ["CPUExecutionProvider"])

    base = {k: 1.0 for k in metrics}
    return ComparisonReport(task, "d.npz", 4, {"x": [4, 1]}, 3, "b.onnx", [row("b.onnx", base), row("c.onnx", metrics)])


def test_min_agreement_budgets_a_head_and_refuses_what_has_no_decisions():
    report = _report("span", {"agreement_with_baseline": 0.8, "span_f1": 0.9})
    assert check_budget(report, Budget(min_agreement=0.75)) == []
    assert "agrees with the baseline on 0.8000" in check_budget(report, Budget(min_agreement=0.9))[0]
    nan = _report("span", {"agreement_with_baseline": math.nan})
    assert check_budget(nan, Budget(min_agreement=0.5))  # NaN fails, never passes
    with pytest.raises(ConfigError, match="min_agreement needs decisions"):
        check_budget(_report("embedding", {"cosine_mean": 0.99}), Budget(min_agreement=0.9))
    with pytest.raises(ConfigError, match="use min_agreement"):
        check_budget(report, Budget(min_cosine=0.9))
    for bad in (1.5, -0.1, math.nan, math.inf):
        with pytest.raises(ConfigError, match="min_agreement"):
            Budget(min_agreement=bad)


def test_the_drop_a_search_minimises_is_one_minus_agreement_for_a_head():
    assert metric_drop({"agreement_with_baseline": 0.9, "span_f1": 0.95}, None) == pytest.approx(0.1)
    assert metric_drop({"cosine_mean": 1.0000001}, None) == 0.0
    assert metric_drop({"accuracy": 0.5}, -0.02) == pytest.approx(0.02)


def test_check_min_agreement_out_of_range_is_exit_2(capsys, tmp_path):
    from tests.conftest import run_cli

    code, _, err = run_cli(
        capsys, "check", tmp_path / "a.onnx", tmp_path / "b.onnx", "--data", "x.npz", "--min-agreement", "2"
    )
    assert code == 2 and "min_agreement = 2.0 is impossible" in err


@pytest.mark.parametrize(
    "head",
    [{"word_delimiter": 10**30, "blank": "x"}, {"word_delimiter": True, "blank": -1}, ["not", "a", "dict"], None],
)
def test_a_tampered_sidecar_head_falls_back_to_safe_ctc_ids(head):
    """meta["head"] comes from a sidecar on disk: ids that are not labels of this vocabulary are not
    used (blank 0, transcripts without word splits), never an IndexError or a wrong split."""
    from edgeinfer.pipelines.compare import metrics

    base = _one_hot(np.array([2, 2, 0, 2, 1, 3]), 4)[None]
    m = metrics(EvalTask.TRANSCRIPTION, [[base]], [[base]], Batches([]), head)  # pyright: ignore[reportArgumentType]
    assert m == {"agreement_with_baseline": 1.0, "wer_vs_baseline": 0.0, "cer_vs_baseline": 0.0}
    cand = _one_hot(np.array([2, 2, 2, 2, 1, 3]), 4)[None]
    assert metrics(EvalTask.TRANSCRIPTION, [[base]], [[cand]], Batches([]), head)["wer_vs_baseline"] == 1.0  # pyright: ignore[reportArgumentType]
