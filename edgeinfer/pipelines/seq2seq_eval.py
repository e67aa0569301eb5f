"""Compressing and comparing exported encoder-decoders (folders written by `export`).

`quantize` applies an ONNX method (dynamic INT8, INT4 weights, FP16) to both graphs and keeps the
generation settings and tokenizer; `compare` generates greedily from the same sources (sentences;
for a speech model, WAV files or synthetic voiced clips) with the baseline and each candidate,
interleaved, and scores the candidate's tokens against the baseline's: exact matches, token
agreement, word error rate of its text against the baseline's text, speed.
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
        wer: word error rate of the decoded text against the baseline's decoded text (0 = same words).
        tokens_per_s: generated tokens over generation time, all sentences.
        speedup, speedup_ci95: the baseline's time per sentence over this one's, interleaved.
    """

    model: str
    size_bytes: int
    tokens: int
    tokens_per_s: float
    exact_match: float = 1.0
    token_agreement: float = 1.0
    wer: float = 0.0
    speedup: float = 1.0
    speedup_ci95: tuple[float, float] = (1.0, 1.0)
    providers: list[str] = field(default_factory=list)


@dataclass
class Seq2SeqComparison:
    text: str
    sentences: int
    max_new_tokens: int
    rows: list[Seq2SeqRow]
    examples: list[dict[str, Any]] = field(default_factory=list)  # the first sources' outputs, side by side
    task: str = "seq2seq-lm"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "task": self.task,
            "text": self.text,
            "sentences": self.sentences,
            "max_new_tokens": self.max_new_tokens,
            "rows": [{**asdict(r), "speedup_ci95": list(r.speedup_ci95)} for r in self.rows],
            "examples": self.examples,
        }


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.onnx"))


def word_error_rate(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words): Levenshtein distance over whitespace-separated words."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)


def _sources(runner, text: Path | None, audio: Path | None, limit: int) -> tuple[str, list[tuple[str, Any]]]:
    """(what was read, [(label, encoder feeds)]): sentences for text models; WAV files (a file or a
    folder of them) or synthetic voiced clips for speech models."""
    from edgeinfer.core.io import require_file
    from edgeinfer.examples import SENTENCES

    if runner.speech:
        from edgeinfer.core.audio import read_wav, synthetic_clips

        rate = int(runner.feature_extractor.sampling_rate)
        if text is not None:
            raise ConfigError(
                "a speech model is compared on audio: give --audio FILE_OR_FOLDER of WAV files, not --text"
            )
        if audio is None:
            clips = synthetic_clips(limit, rate=rate)
            return f"{limit} synthetic voiced clips", [
                (f"clip {i}", runner.encode_audio(c)) for i, c in enumerate(clips)
            ]
        audio = Path(audio)
        files = sorted(audio.glob("*.wav"))[:limit] if audio.is_dir() else [require_file(audio, "WAV file")]
        if not files:
            raise InputError(f"{audio} holds no .wav files")
        return str(audio), [(f.name, runner.encode_audio(read_wav(f, rate))) for f in files]
    if audio is not None:
        raise ConfigError("--audio is for speech models; this encoder-decoder takes text (--text FILE)")
    path = require_file(Path(text) if text else SENTENCES, "text file")
    from edgeinfer.core.formats import read_text_file

    lines = [line.strip() for line in read_text_file(path).splitlines() if line.strip()][:limit]
    if not lines:
        raise InputError(f"{path} has no sentences (one source sentence a line)")
    return str(path), [(line, runner.encode(line)) for line in lines]


def compare_seq2seq(
    baseline: Path,
    candidates: list[Path],
    text: Path | None = None,
    *,
    audio: Path | None = None,
    limit: int = 32,
    max_new_tokens: int = 32,
    progress: Progress = QUIET,
) -> Seq2SeqComparison:
    """Greedy generation from the first `limit` sources with each folder, interleaved per source."""
    from edgeinfer.core.measure import apply_measurement_env

    apply_measurement_env()  # before torch or llama.cpp loads: OpenMP reads it once
    import time

    from edgeinfer.core.measure import speedup_ci
    from edgeinfer.core.model_kind import ModelKind
    from edgeinfer.runtime import load

    if not candidates:
        raise ConfigError("give at least one candidate folder after the baseline")
    runners: list[Any] = [load(Path(m), expect=ModelKind.SEQ2SEQ) for m in [baseline, *candidates]]
    if any(r.speech != runners[0].speech for r in runners):
        raise InputError("the baseline and the candidates must all be speech models, or all text models")
    read, sources = _sources(runners[0], text, audio, limit)
    lines = [label for label, _ in sources]
    outs: list[list[list[int]]] = [[] for _ in runners]
    times: list[list[float]] = [[] for _ in runners]
    for i, (_, feeds) in enumerate(sources):
        for r, runner in enumerate(runners):
            start = time.perf_counter()
            outs[r].append(runner.generate(inputs=feeds, max_new_tokens=max_new_tokens).tokens)
            times[r].append(time.perf_counter() - start)
        progress.advance(i + 1, len(lines), "sources generated")
    tok = runners[0].tokenizer
    texts = [[tok.decode(o, skip_special_tokens=True) for o in outs[r]] for r in range(len(runners))]
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
            edits = [word_error_rate(ref, hyp) for ref, hyp in zip(texts[0], texts[r])]
            words = sum(n for _, n in edits)
            row.wer = sum(e for e, _ in edits) / words if words else float(any(e for e, _ in edits))
            point, lo, hi = speedup_ci(times[0], times[r])
            row.speedup, row.speedup_ci95 = point, (lo, hi)
        rows.append(row)
    examples = [
        {"source": lines[i], **{f"model_{r}": texts[r][i] for r in range(len(runners))}}
        for i in range(min(3, len(lines)))
    ]
    task = "speech-seq2seq" if runners[0].speech else "seq2seq-lm"
    return Seq2SeqComparison(read, len(lines), max_new_tokens, rows, examples, task)


def quantize_seq2seq(
    folder: Path, output: Path, method: str, *, force: bool = False, progress: Progress = QUIET
) -> Seq2SeqComparison:
    """Quantize both graphs of an exported encoder-decoder into the folder `output` (atomically),
    then compare its greedy generation with the original's on the shipped sentences."""
    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.core.artifact import SIDECAR_SUFFIX
    from edgeinfer.pipelines.deploy.bundle import bundle_dir
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
