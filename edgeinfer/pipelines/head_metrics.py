"""compare's metrics for task heads whose outputs are not one row per sample: per-token labels
(token classification, fill-mask), answer spans (extractive QA), detections (DETR-style query sets),
segmentation maps and CTC transcriptions.

Each takes both models' outputs on every batch (`outs[batch][k]`: output k of the graph, in the
export's order) and the batches, and scores the candidate against the baseline's predictions, so
a compressed model is held to what its float parent decides, label by label. Every metric set has
`agreement_with_baseline` (the share of decisions that agree: tokens, answers, queries, pixels,
transcripts), which `check --min-agreement` budgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeinfer.core.data import Batches

Outputs = Sequence[Sequence[np.ndarray]]  # [batch][output index]

MAX_ANSWER_TOKENS = 30  # the longest answer span QA post-processing considers (as transformers' pipeline)
BLANK_ID = 0  # the CTC blank: the pad token, id 0 in Wav2Vec2-family vocabularies


def _real_tokens(data: Batches, index: int, shape: tuple[int, ...]) -> np.ndarray:
    """[batch, sequence] mask of real (unpadded) tokens of batch `index`."""
    mask = data.attention_masks[index] if data.attention_masks else data.batches[index].get("attention_mask")
    if mask is None or mask.shape != shape:
        return np.ones(shape, dtype=bool)
    return mask.astype(bool)


def _macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Macro F1 of `pred` against `truth` over the classes either uses."""
    scores = []
    for c in np.union1d(truth, pred):
        tp = float(np.sum((pred == c) & (truth == c)))
        fp, fn = float(np.sum((pred == c) & (truth != c))), float(np.sum((pred != c) & (truth == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return float(np.mean(scores)) if scores else 1.0


def token_metrics(base: Outputs, cand: Outputs, data: Batches) -> dict[str, float]:
    """Token classification: the label each real token gets, against the baseline's."""
    truth, pred = [], []
    for i, (b, c) in enumerate(zip(base, cand)):
        mask = _real_tokens(data, i, b[0].shape[:2])
        truth.append(b[0].argmax(-1)[mask])
        pred.append(c[0].argmax(-1)[mask])
    t, p = np.concatenate(truth), np.concatenate(pred)
    agree = float(np.mean(t == p)) if t.size else 1.0
    return {"agreement_with_baseline": agree, "token_macro_f1": _macro_f1(t, p)}


def fill_mask_metrics(base: Outputs, cand: Outputs, data: Batches, k: int = 5) -> dict[str, float]:
    """Masked LM: per real token, whether the candidate's top-1 word is the baseline's, and whether
    the baseline's top-1 is among the candidate's top k."""
    top1, topk = [], []
    for i, (b, c) in enumerate(zip(base, cand)):
        mask = _real_tokens(data, i, b[0].shape[:2])
        want = b[0].argmax(-1)[mask]
        logits = c[0][mask]
        top1.append(logits.argmax(-1) == want)
        kth = np.argpartition(-logits, min(k, logits.shape[-1]) - 1, axis=-1)[:, :k]
        topk.append((kth == want[:, None]).any(-1))
    one, many = np.concatenate(top1), np.concatenate(topk)
    return {
        "agreement_with_baseline": float(one.mean()) if one.size else 1.0,
        f"top{k}_contains_baseline": float(many.mean()) if many.size else 1.0,
    }


def _best_span(start: np.ndarray, end: np.ndarray, real: np.ndarray) -> tuple[int, int]:
    """The (start, end) token pair with the highest start + end logit, end >= start, at most
    MAX_ANSWER_TOKENS long, both on real tokens."""
    s = np.where(real, start, -np.inf)
    e = np.where(real, end, -np.inf)
    n = len(s)
    scores = s[:, None] + e[None, :]
    i, j = np.indices((n, n))
    scores[(j < i) | (j - i >= MAX_ANSWER_TOKENS)] = -np.inf
    flat = int(np.argmax(scores))
    return flat // n, flat % n


def span_metrics(base: Outputs, cand: Outputs, data: Batches) -> dict[str, float]:
    """Extractive QA: the answer span each model picks (start and end logits), exact match and
    token-overlap F1 against the baseline's span."""
    exact, f1 = [], []
    for i, (b, c) in enumerate(zip(base, cand)):
        real = _real_tokens(data, i, b[0].shape[:2])
        for row in range(b[0].shape[0]):
            bs, be = _best_span(b[0][row], b[1][row], real[row])
            cs, ce = _best_span(c[0][row], c[1][row], real[row])
            exact.append((bs, be) == (cs, ce))
            overlap = max(0, min(be, ce) - max(bs, cs) + 1)
            f1.append(2 * overlap / ((be - bs + 1) + (ce - cs + 1)))
    return {"agreement_with_baseline": float(np.mean(exact)), "span_f1": float(np.mean(f1))}


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes given as (centre x, centre y, width, height), row by row."""

    def corners(x):
        return (
            x[..., 0] - x[..., 2] / 2,
            x[..., 1] - x[..., 3] / 2,
            x[..., 0] + x[..., 2] / 2,
            x[..., 1] + x[..., 3] / 2,
        )

    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None
    )
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 1.0)


def detection_metrics(base: Outputs, cand: Outputs, data: Batches) -> dict[str, float]:
    """DETR-style detection (logits [batch, queries, classes + "no object"], pred_boxes [batch,
    queries, 4]): a query is the same slot in both models, so boxes are matched by query. Class
    agreement over every query; box IoU over the queries the baseline calls an object (all queries
    when it calls none, as a random head does)."""
    agree, ious = [], []
    for b, c in zip(base, cand):
        b_cls, c_cls = b[0].argmax(-1), c[0].argmax(-1)
        agree.append((b_cls == c_cls).ravel())
        found = b_cls != b[0].shape[-1] - 1
        iou = _iou(b[1], c[1])
        ious.append((iou[found] if found.any() else iou).ravel())
    return {
        "agreement_with_baseline": float(np.concatenate(agree).mean()),
        "box_iou_mean": float(np.concatenate(ious).mean()),
    }


def segmentation_metrics(base: Outputs, cand: Outputs, data: Batches) -> dict[str, float]:
    """Semantic segmentation (logits [batch, classes, height, width]): per-pixel class agreement
    and mean IoU over the classes either model paints, the baseline's map taken as the truth."""
    b_map = np.concatenate([b[0].argmax(1).ravel() for b in base])
    c_map = np.concatenate([c[0].argmax(1).ravel() for c in cand])
    ious = []
    for cls in np.union1d(b_map, c_map):
        inter = np.sum((b_map == cls) & (c_map == cls))
        union = np.sum((b_map == cls) | (c_map == cls))
        ious.append(inter / union)
    return {"agreement_with_baseline": float(np.mean(b_map == c_map)), "miou_vs_baseline": float(np.mean(ious))}


def ctc_decode(logits: np.ndarray, blank: int) -> list[int]:
    """Greedy CTC: the best label per frame, repeats collapsed, blanks dropped."""
    best = logits.argmax(-1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(t) for t in best[keep] if t != blank]


def _edits(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        row = [i]
        for j, y in enumerate(b, 1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = row
    return prev[-1]


def _words(ids: list[int], delimiter: int | None) -> list[tuple[int, ...]]:
    if delimiter is None:
        return [tuple(ids)] if ids else []
    words, word = [], []
    for t in [*ids, delimiter]:
        if t == delimiter:
            if word:
                words.append(tuple(word))
            word = []
        else:
            word.append(t)
    return words


def transcription_metrics(
    base: Outputs, cand: Outputs, data: Batches, delimiter: int | None = None, blank: int = BLANK_ID
) -> dict[str, float]:
    """CTC speech recognition (logits [batch, frames, vocabulary]): both greedy transcripts, the
    candidate's word and character (label) error rates against the baseline's, and the share of
    clips transcribed identically. Words split at the vocabulary's word delimiter ("|"); without
    one, the WER is over whole transcripts."""
    word_edits = words = unit_edits = units = same = clips = 0
    for b, c in zip(base, cand):
        for row in range(b[0].shape[0]):
            want, got = ctc_decode(b[0][row], blank), ctc_decode(c[0][row], blank)
            ww, gw = _words(want, delimiter), _words(got, delimiter)
            word_edits += _edits(ww, gw)
            words += len(ww)
            unit_edits += _edits(want, got)
            units += len(want)
            same += want == got
            clips += 1
    return {
        "agreement_with_baseline": same / clips if clips else 1.0,
        "wer_vs_baseline": word_edits / words if words else float(word_edits > 0),
        "cer_vs_baseline": unit_edits / units if units else float(unit_edits > 0),
    }
