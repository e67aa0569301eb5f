"""Compressing and comparing exported encoder-decoders (folders written by `export`).

`quantize` applies an ONNX method (dynamic INT8, INT4 weights, FP16) to both graphs and keeps the
generation settings and tokenizer; `compare` generates greedily from the same source sentences with
the baseline and each candidate, interleaved, and scores the candidate's tokens against the
baseline's: exact matches, token agreement, speed.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import ConfigError, InputError, OutputExistsError, option
from edgeinfer.core.progress import QUIET, Progress

SEQ2SEQ_METHODS = ("dynamic", "int4", "fp16")  # static would need calibration data for every past length


@dataclass
class Seq2SeqRow:
    """One folder: what it generated against the baseline's tokens, and how fast.

    Args:
        exact_match: share of sentences whose tokens equal the baseline's.
        token_agreement: share of the baseline's tokens the candidate has at the same position.
        tokens_per_s: generated tokens over generation time, all sentences.
        speedup, speedup_ci95: the baseline's time per sentence over this one's, interleaved.
    """

    model: str
    size_bytes: int
    tokens: int
    tokens_per_s: float
    exact_match: float = 1.0
    token_agreement: float = 1.0
    speedup: float = 1.0
    speedup_ci95: tuple[float, float] = (1.0, 1.0)
    providers: list[str] = field(default_factory=list)


@dataclass
class Seq2SeqComparison:
    text: str
    sentences: int
    max_new_tokens: int
    rows: list[Seq2SeqRow]
    examples: list[dict[str, Any]] = field(default_factory=list)  # the first sentences' outputs, side by side

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "task": "seq2seq-lm",
            "text": self.text,
            "sentences": self.sentences,
            "max_new_tokens": self.max_new_tokens,
            "rows": [{**asdict(r), "speedup_ci95": list(r.speedup_ci95)} for r in self.rows],
            "examples": self.examples,
        }


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.onnx"))


def compare_seq2seq(
    baseline: Path,
    candidates: list[Path],
    text: Path | None = None,
    *,
    limit: int = 32,
    max_new_tokens: int = 32,
    progress: Progress = QUIET,
) -> Seq2SeqComparison:
    """Greedy generation from the first `limit` lines of `text` with each folder, interleaved per sentence."""
    import time

    from edgeinfer.core.io import require_file
    from edgeinfer.core.measure import speedup_ci
    from edgeinfer.examples import SENTENCES
    from edgeinfer.runtime.seq2seq import Seq2SeqRunner

    if not candidates:
        raise ConfigError("give at least one candidate folder after the baseline")
    path = require_file(Path(text) if text else SENTENCES, "text file")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    if not lines:
        raise InputError(f"{path} has no sentences (one source sentence a line)")
    runners = [Seq2SeqRunner(Path(m)) for m in [baseline, *candidates]]
    outs: list[list[list[int]]] = [[] for _ in runners]
    times: list[list[float]] = [[] for _ in runners]
    for i, line in enumerate(lines):
        feeds = runners[0].encode(line)
        for r, runner in enumerate(runners):
            start = time.perf_counter()
            outs[r].append(runner.generate(inputs=feeds, max_new_tokens=max_new_tokens).tokens)
            times[r].append(time.perf_counter() - start)
        progress.advance(i + 1, len(lines), "sentences generated")
    rows = []
    for r, model in enumerate([baseline, *candidates]):
        n_tokens = sum(len(t) for t in outs[r])
        row = Seq2SeqRow(
            str(model), _size(Path(model)), n_tokens, n_tokens / max(sum(times[r]), 1e-9),
            providers=runners[r].decoder.report.used,
        )  # fmt: skip
        if r:
            base = outs[0]
            row.exact_match = sum(a == b for a, b in zip(base, outs[r])) / len(lines)
            total = sum(len(b) for b in base)
            same = sum(sum(x == y for x, y in zip(b, c)) for b, c in zip(base, outs[r]))
            row.token_agreement = same / total if total else 1.0
            point, lo, hi = speedup_ci(times[0], times[r])
            row.speedup, row.speedup_ci95 = point, (lo, hi)
        rows.append(row)
    tok = runners[0].tokenizer
    examples = [
        {
            "source": lines[i],
            **{f"model_{r}": tok.decode(outs[r][i], skip_special_tokens=True) for r in range(len(runners))},
        }
        for i in range(min(3, len(lines)))
    ]
    return Seq2SeqComparison(str(path), len(lines), max_new_tokens, rows, examples)


def quantize_seq2seq(
    folder: Path, output: Path, method: str, *, force: bool = False, progress: Progress = QUIET
) -> Seq2SeqComparison:
    """Quantize both graphs of an exported encoder-decoder into the folder `output` (atomically),
    then compare its greedy generation with the original's on the shipped sentences."""
    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.core.artifact import SIDECAR_SUFFIX
    from edgeinfer.pipelines.bundle import bundle_dir
    from edgeinfer.pipelines.quantize import quantize
    from edgeinfer.runtime.seq2seq import GENERATION

    folder, output = Path(folder), Path(output)
    if method not in SEQ2SEQ_METHODS:
        raise ConfigError(
            f"{option('method', method)} on an encoder-decoder: use {', '.join(SEQ2SEQ_METHODS)} (static INT8 would "
            "need calibration data for every cache length)"
        )
    if output.suffix:
        raise ConfigError(
            f"an encoder-decoder is quantized into a folder: name the output without a suffix, not {output.name}"
        )
    if output.resolve() == folder.resolve():
        raise ConfigError("the output folder is the input folder; choose another (the input is never modified)")
    if output.exists() and any(output.iterdir()):
        if not force:
            raise OutputExistsError(f"output {output} exists; pass {option('force', True)} to replace it")
        if not (output / GENERATION).is_file():
            raise OutputExistsError(f"{output} holds files but is no exported encoder-decoder; refusing to replace it")
    with bundle_dir(output) as tmp:
        for item in sorted(folder.iterdir()):
            if item.is_file() and item.suffix != ".onnx" and not item.name.endswith(".onnx" + SIDECAR_SUFFIX):
                shutil.copyfile(item, tmp / item.name)
        for part in sorted(folder.glob("*.onnx")):
            progress.stage(f"quantizing {part.name} ({method})")
            quantize(part, tmp / part.name, OnnxQuantConfig(method), compare=False, progress=progress)
        progress.stage("comparing greedy generation with the original")
        result = compare_seq2seq(folder, [tmp], limit=16, max_new_tokens=24, progress=progress)
    result.rows[1].model = str(output)
    return result
