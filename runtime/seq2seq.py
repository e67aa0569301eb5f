"""Greedy generation with an exported encoder-decoder (a folder: encoder.onnx, decoder.onnx,
generation.json, the tokenizer; a speech model's feature extractor settings) on ONNX Runtime, with
the decoder's self-attention KV cache.

The generation settings are the model's own (generation.json): the decoder start token (Whisper:
its prompt of start, language, task and no-timestamps tokens), EOS, the forced first / last
tokens, banned and suppressed tokens, a minimum length and no-repeat n-grams, as transformers
applies them in greedy search. Beam search, Whisper's language detection and timestamps are not
done here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeinfer.core.errors import InputError
from edgeinfer.core.model_kind import GENERATION, ModelKind
from edgeinfer.core.schema import Record
from edgeinfer.runtime import Backend, GenerationStats, Target, register_backend
from edgeinfer.runtime.ort import OrtRunner


def is_seq2seq_folder(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / GENERATION).is_file()


@dataclass(frozen=True)
class GenerationSettings(Record):
    """generation.json as the exporter writes it (the model's own generation config), checked as
    data: every token id is an integer inside the decoder's vocabulary, lengths are bounded."""

    open_keys: ClassVar[bool] = True

    decoder_start_token_id: int
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list[int] | None = None
    bad_words_ids: list[list[int]] | None = None
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = None
    decoder_prompt_ids: list[int] | None = None
    min_length: int | None = None
    max_length: int | None = None
    no_repeat_ngram_size: int | None = None
    files: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    def check(self, where: str) -> None:
        for name in ("min_length", "max_length", "no_repeat_ngram_size"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1 << 20:
                raise InputError(f"{where}: {name} is {value}; it must be 0 ... {1 << 20}")

    def check_tokens(self, n_vocab: int, where: str) -> None:
        ids: list[Any] = [self.decoder_start_token_id, self.pad_token_id, self.forced_bos_token_id]
        for value in (self.eos_token_id, self.forced_eos_token_id):
            ids += value if isinstance(value, list) else [value]
        for group in (self.suppress_tokens, self.begin_suppress_tokens, self.decoder_prompt_ids):
            ids += group or []
        for words in self.bad_words_ids or []:
            ids += words
        wrong = [i for i in ids if i is not None and not 0 <= i < n_vocab]
        if wrong:
            raise InputError(
                f"{where} names token id {wrong[0]}, outside the decoder's vocabulary of {n_vocab}; re-export the model"
            )


@dataclass
class Generated:
    tokens: list[int]  # generated ids, the decoder start token excluded
    text: str
    seconds: float
    steps: int
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0


class Seq2SeqRunner:
    """The folder's encoder and decoder on the given providers, and its tokenizer."""

    def __init__(self, folder: Path, *, providers=None, threads: int | None = None, allow_fallback: bool = False):
        from edgeinfer.core.formats import read_json_object
        from edgeinfer.core.hf_folder import load_tokenizer

        folder = Path(folder)
        if not is_seq2seq_folder(folder):
            raise InputError(f"{folder} is not an exported encoder-decoder (no {GENERATION})")
        settings = GenerationSettings.parse(read_json_object(folder / GENERATION, "generation settings"), GENERATION)
        self.settings = {k: v for k, v in dataclasses.asdict(settings).items() if v is not None}
        files = self.settings.get("files", {})
        for part in ("encoder", "decoder"):
            name = str(files.get(part, f"{part}.onnx"))
            if Path(name).is_absolute() or not (folder / name).resolve().is_relative_to(folder.resolve()):
                raise InputError(f"{GENERATION} names {name!r}, a path outside {folder}; refusing it")
        self.encoder, self.decoder = (
            OrtRunner(
                folder / str(files.get(part, f"{part}.onnx")),
                providers=providers,
                threads=threads,
                allow_fallback=allow_fallback,
                profile_first_run=False,
            )  # fmt: skip
            for part in ("encoder", "decoder")
        )
        self.past_names = [i.name for i in self.decoder.inputs if i.name.startswith("past.")]
        self.takes_mask = any(i.name == "encoder_attention_mask" for i in self.decoder.inputs)
        self.tokenizer = load_tokenizer(folder, pad_with_eos=False)
        self.speech = self.settings.get("source") == "audio"
        self.feature_extractor = None
        if self.speech:
            from edgeinfer.core.hf_folder import load_feature_extractor

            self.feature_extractor = load_feature_extractor(folder)
        vocab = self.decoder.session.get_outputs()[0].shape[-1]
        settings.check_tokens(vocab if isinstance(vocab, int) else len(self.tokenizer), GENERATION)
        first = next(i for i in self.decoder.inputs if i.name.startswith("past."))
        self.heads, self.head_size = int(first.shape[1]), int(first.shape[3])

    def encode(self, text: str) -> dict[str, np.ndarray]:
        if self.speech:
            raise InputError("this is a speech model: give it audio (--audio FILE.wav), not text")
        enc = self.tokenizer([text], return_tensors="np")
        return {
            "input_ids": enc["input_ids"].astype(np.int64),
            "attention_mask": enc["attention_mask"].astype(np.int64),
        }

    def encode_audio(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        """Log-mel features of one mono clip at the extractor's sampling rate (padded or cut to its chunk)."""
        fe = self.feature_extractor
        if fe is None:
            raise InputError("this is a text model: give it text (--prompt), not audio")
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise InputError(f"audio must be one non-empty mono channel, got shape {wave.shape}")
        feats = fe(wave, sampling_rate=fe.sampling_rate, return_tensors="np")["input_features"]
        return {"input_features": feats.astype(np.float32)}

    def generate(
        self, text: str | None = None, *, inputs: dict[str, np.ndarray] | None = None, max_new_tokens: int = 64
    ):
        """Greedy decoding of one source; `inputs` (input_ids, attention_mask; or a speech model's
        input_features) instead of text."""
        import time

        feeds = inputs if inputs is not None else self.encode(text or "")
        if next(iter(feeds.values())).shape[0] != 1:
            raise InputError("generate takes one source sequence at a time")
        start = time.perf_counter()
        hidden = self.encoder.session.run(None, feeds)[0]
        s = self.settings
        eos = s.get("eos_token_id")
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        limit = max_new_tokens  # as in transformers, max_new_tokens wins over the config's max_length
        prompt = [int(t) for t in s.get("decoder_prompt_ids") or [s["decoder_start_token_id"]]]
        tokens = list(prompt)
        past = {n: np.zeros((1, self.heads, 0, self.head_size), np.float32) for n in self.past_names}
        new = np.array([prompt], dtype=np.int64)
        out_names = [o.name for o in self.decoder.session.get_outputs()]
        mask = {"encoder_attention_mask": feeds["attention_mask"]} if self.takes_mask else {}
        for step in range(limit):
            outs = self.decoder.session.run(None, {"input_ids": new, "encoder_hidden_states": hidden, **mask, **past})
            logits = np.asarray(outs[0])[0, -1].astype(np.float64)
            self._process(logits, tokens, step, limit, eos_ids)
            nxt = int(logits.argmax())
            tokens.append(nxt)
            past = {n.replace("present.", "past."): v for n, v in zip(out_names[1:], outs[1:])}
            new = np.array([[nxt]], dtype=np.int64)
            if nxt in eos_ids:
                break
        seconds = time.perf_counter() - start
        generated = tokens[len(prompt) :]
        text_out = self.tokenizer.decode(generated, skip_special_tokens=True)
        used = self.decoder.report.used
        return Generated(generated, text_out, seconds, len(generated), {"providers": used})

    @property
    def report(self):
        """What ran the decoder (the encoder runs on the same providers)."""
        return self.decoder.report

    def stream(self, prompt: str | np.ndarray, max_tokens: int = 64) -> Iterator[str | GenerationStats]:
        """The Runner interface: the greedy generation of one source (text, or a speech model's mono
        waveform at its feature extractor's rate) as one piece, then its GenerationStats."""
        if isinstance(prompt, str):
            out = self.generate(prompt, max_new_tokens=max_tokens)
        else:
            out = self.generate(inputs=self.encode_audio(prompt), max_new_tokens=max_tokens)
        yield out.text
        yield GenerationStats(
            generated_tokens=out.steps, generate_seconds=out.seconds, text=out.text, report=out.report,
            extra={"tokens": out.tokens, "tokens_per_s": out.tokens_per_s, **out.report},
        )  # fmt: skip

    def close(self) -> None:
        """Nothing to free early: the sessions go with the runner."""

    def _process(self, logits: np.ndarray, tokens: list[int], step: int, limit: int, eos_ids: set[int]) -> None:
        """transformers' greedy logits processors, in place: the forced first and last tokens, banned
        tokens, the minimum length, no repeated n-grams."""
        s = self.settings
        length = len(tokens)  # what transformers counts: the start token included

        def force(token: int) -> None:
            logits[:] = -np.inf
            logits[token] = 0.0

        if s.get("min_length") and length < int(s["min_length"]):
            for e in eos_ids:
                logits[e] = -np.inf
        for banned in s.get("bad_words_ids") or []:
            if len(banned) == 1:
                logits[banned[0]] = -np.inf
        for suppressed in s.get("suppress_tokens") or []:
            logits[suppressed] = -np.inf
        if step == 0:
            for suppressed in s.get("begin_suppress_tokens") or []:
                logits[suppressed] = -np.inf
        n = int(s.get("no_repeat_ngram_size") or 0)
        if n and length >= n:
            prefix = tuple(tokens[length - n + 1 :])
            for i in range(length - n + 1):
                if tuple(tokens[i : i + n - 1]) == prefix:
                    logits[tokens[i + n - 1]] = -np.inf
        if step == 0 and s.get("forced_bos_token_id") is not None:
            force(int(s["forced_bos_token_id"]))
        if step == limit - 1 and s.get("forced_eos_token_id") is not None:
            fe = s["forced_eos_token_id"]
            force(int(fe[0] if isinstance(fe, list) else fe))


def _load(path: Path, target: Target) -> Seq2SeqRunner:
    providers = list(target.providers) if target.providers else None
    return Seq2SeqRunner(path, providers=providers, threads=target.threads, allow_fallback=target.allow_fallback)


register_backend(
    Backend(
        "onnxruntime-seq2seq",
        (ModelKind.SEQ2SEQ,),
        frozenset({"providers", "threads", "allow_fallback"}),
        _load,
        generates=True,
    )
)
