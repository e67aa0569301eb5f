"""Encoder-decoders (T5, BART, Marian; Whisper for speech) as two ONNX graphs that generate with a KV cache.

The encoder maps (input_ids, attention_mask) to its hidden states; Whisper's maps log-mel
`input_features` (a fixed number of frames: 30 s for the released models) and takes no mask, so
neither does its decoder. The decoder is one graph for
every step: it takes the new decoder tokens, the encoder's hidden states and mask, and the
self-attention keys and values of the steps before (`past.L.key` / `past.L.value`, length 0 at the
first step) and returns the logits and the extended cache (`present.L.*`). The cross-attention keys
and values are recomputed from the encoder states at each step: one graph, no cache of the source.

Both are ordinary export sources (exporters.source.SourceModel), so each is validated against the
PyTorch model on two input sets before it ships; the decoder's second set starts from an empty
cache, the first step of every generation.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import InputError
from edgeinfer.exporters.source import SourceModel

ENCODER, DECODER, GENERATION = "encoder.onnx", "decoder.onnx", "generation.json"
# The generation settings the runtime applies (greedy search), read from the model's generation config.
GENERATION_KEYS = (
    "decoder_start_token_id", "eos_token_id", "pad_token_id", "forced_bos_token_id", "forced_eos_token_id",
    "bad_words_ids", "min_length", "no_repeat_ngram_size", "max_length", "suppress_tokens", "begin_suppress_tokens",
)  # fmt: skip
# Whisper's decoder prompt: <|startoftranscript|> <|lang|> <|task|> <|notimestamps|>.
SPEECH_LANGUAGE, SPEECH_TASK = "en", "transcribe"


@dataclass
class Seq2SeqParts:
    encoder: SourceModel
    decoder: SourceModel
    generation: dict[str, Any]
    model: Any  # the transformers model, for the end-to-end generation check
    tokenizer: Any
    feature_extractor: Any = None  # speech models: the folder's own (log-mel settings)
    task: str = "seq2seq-lm"


def _layers_heads(config) -> tuple[int, int, int]:
    """(decoder layers, heads, head size) under the names T5 and BART-like configs use."""
    layers = getattr(config, "num_decoder_layers", None) or getattr(config, "decoder_layers", None)
    heads = getattr(config, "num_heads", None) or getattr(config, "decoder_attention_heads", None)
    d_model = getattr(config, "d_model", None)
    head_size = getattr(config, "d_kv", None) or (d_model // heads if d_model and heads else None)
    if not (layers and heads and head_size):
        raise InputError(f"cannot read the decoder's layers, heads and head size from the {config.model_type} config")
    return int(layers), int(heads), int(head_size)


def generation_settings(model) -> dict[str, Any]:
    gen = getattr(model, "generation_config", None)
    out = {}
    for key in GENERATION_KEYS:
        value = getattr(gen, key, None) if gen is not None else None
        if value is None:
            value = getattr(model.config, key, None)
        if value is not None:
            out[key] = value
    if out.get("decoder_start_token_id") is None:
        raise InputError("the model's config names no decoder_start_token_id: the decoder cannot start")
    return out


# Whisper's language tokens: <|en|>, <|de|>, <|yue|>, <|haw|> (task and control tokens are longer).
_LANGUAGE_TOKEN = re.compile(r"^<\|[a-z]{2,3}\|>$")


def complete_language_tokens(model, tokenizer) -> bool:
    """Older and fine-tuned Whisper folders save a generation config without lang_to_id /
    task_to_id, and transformers' `generate` then refuses a language. Their tokenizer still holds
    the language and task tokens: read the maps from it, as the original checkpoint had them
    (an English-only model, `is_multilingual` false, is left alone). True if anything was filled."""
    gen = model.generation_config
    if getattr(gen, "lang_to_id", None) or getattr(gen, "is_multilingual", None) is False:
        return False
    vocab = tokenizer.get_vocab()
    languages = {t: int(i) for t, i in vocab.items() if _LANGUAGE_TOKEN.match(t)}
    tasks = {name: int(vocab[f"<|{name}|>"]) for name in ("transcribe", "translate") if f"<|{name}|>" in vocab}
    if not languages or "transcribe" not in tasks:
        return False
    gen.lang_to_id = dict(sorted(languages.items(), key=lambda kv: kv[1]))
    gen.task_to_id = {**tasks, **(getattr(gen, "task_to_id", None) or {})}
    gen.is_multilingual = True
    if getattr(gen, "no_timestamps_token_id", None) is None and "<|notimestamps|>" in vocab:
        gen.no_timestamps_token_id = int(vocab["<|notimestamps|>"])
    return True


def speech_prompt(model, language: str = SPEECH_LANGUAGE, task: str = SPEECH_TASK) -> list[int]:
    """Whisper's decoder prompt from its generation config: the start token, then the language and
    task tokens (multilingual models) and <|notimestamps|>, as transformers' `generate` builds it."""
    gen = model.generation_config
    prompt = [int(gen.decoder_start_token_id)]
    if getattr(gen, "is_multilingual", False):
        languages, tasks = getattr(gen, "lang_to_id", None) or {}, getattr(gen, "task_to_id", None) or {}
        token = f"<|{language}|>"
        if token not in languages or task not in tasks:
            raise InputError(
                f"the generation config of this multilingual model has no {token} or {task!r} "
                "(lang_to_id / task_to_id); re-save it with a current transformers"
            )
        prompt += [int(languages[token]), int(tasks[task])]
    if getattr(gen, "no_timestamps_token_id", None) is not None:
        prompt.append(int(gen.no_timestamps_token_id))
    return prompt


def _speech_encoder_inputs(path: Path, model) -> tuple[Any, Any, Any]:
    """(feature extractor, example inputs, second inputs): log-mel features of synthetic voiced clips."""
    import torch

    from edgeinfer.core.audio import synthetic_clips
    from edgeinfer.core.hf_folder import load_feature_extractor

    fe = load_feature_extractor(path)
    expected = int(model.config.max_source_positions) * 2  # the second convolution has stride 2
    frames = int(getattr(fe, "nb_max_frames", 0) or 0)
    if int(getattr(fe, "feature_size", 0) or 0) != int(model.config.num_mel_bins) or frames != expected:
        raise InputError(
            f"{path / 'preprocessor_config.json'} gives {fe.feature_size} mel bins x {frames} frames, "
            f"the model takes {model.config.num_mel_bins} x {expected}: it is another model's feature extractor"
        )
    rate = int(fe.sampling_rate)
    seconds = frames * int(fe.hop_length) / rate

    def features(clips):
        out = fe(clips, sampling_rate=rate, return_tensors="np")
        return {"input_features": torch.from_numpy(out["input_features"].astype("float32"))}

    return fe, features(synthetic_clips(1, seconds, rate)), features(synthetic_clips(2, seconds, rate, seed=1))


def load_seq2seq(path: Path, allow_new_head: bool = False, task: str | None = None) -> Seq2SeqParts:
    """The encoder and decoder of a seq2seq folder as export sources, with example inputs from its
    own tokenizer (and, for speech, its feature extractor)."""
    import torch

    from edgeinfer.core.hf_folder import check_tokens_are_real, load_tokenizer, read_config
    from edgeinfer.exporters.source import load_pretrained
    from edgeinfer.exporters.tasks import infer_task
    from edgeinfer.exporters.tasks._inputs import SENTENCES

    if task is None:
        task = infer_task((read_config(path).get("architectures") or [""])[0]).name
    speech = task == "speech-seq2seq"
    model, config, arch, spec, head = load_pretrained(path, task, allow_new_head)
    tokenizer = load_tokenizer(path)
    layers, heads, head_size = _layers_heads(model.config)
    description = {
        "kind": "huggingface", "path": str(path.resolve()), "architecture": arch,
        "model_type": config.get("model_type"), "task": spec.name,
    }  # fmt: skip
    if head:
        description["new_head"] = head

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.get_encoder()

        def forward(self, input_ids, attention_mask):
            return (self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,)

    class SpeechEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.get_encoder()

        def forward(self, input_features):
            return (self.encoder(input_features=input_features).last_hidden_state,)

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, encoder_hidden_states, *rest):
            from transformers.cache_utils import DynamicCache, EncoderDecoderCache

            mask, past = (None, rest) if speech else (rest[0], rest[1:])
            own = DynamicCache()
            for i in range(layers):
                own.update(past[2 * i], past[2 * i + 1], i)
            with warnings.catch_warnings():
                # transformers 5.2x renames past_key_values (Whisper first); the old name still works.
                warnings.filterwarnings("ignore", ".*past_key_values.*deprecated", FutureWarning)
                out = self.model(
                    encoder_outputs=(encoder_hidden_states,),
                    **({} if speech else {"attention_mask": mask}),
                    decoder_input_ids=input_ids,
                    past_key_values=EncoderDecoderCache(own, DynamicCache()),
                    use_cache=True,
                    return_dict=True,
                )
            cache = out.past_key_values.self_attention_cache
            return (out.logits, *[t for i in range(layers) for t in (cache.layers[i].keys, cache.layers[i].values)])

    def encode(sentences):
        enc = tokenizer(sentences, padding=True, return_tensors="pt")
        check_tokens_are_real(tokenizer, enc["input_ids"].numpy(), path)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    fe = None
    if speech:
        # The frame axis is fixed: Whisper's encoder takes exactly its positions' worth of frames.
        fe, enc_example, enc_second = _speech_encoder_inputs(path, model)
        encoder: torch.nn.Module = SpeechEncoder().eval()
        enc_names, enc_axes = ["input_features"], {"input_features": {0: "batch"}}
    else:
        encoder = Encoder().eval()
        enc_example, enc_second = encode(SENTENCES[:2]), encode(SENTENCES[2:5])
        enc_names = ["input_ids", "attention_mask"]
        enc_axes = {n: {0: "batch", 1: "source"} for n in enc_names}
    enc_src = SourceModel(
        encoder, enc_names, ["last_hidden_state"], enc_example, enc_second, enc_axes,
        {**description, "part": "encoder"}, spec.name, tokenizer_dir=str(path.resolve()),
        output_axes={"last_hidden_state": {0: "batch", 1: "source"}},
    )  # fmt: skip

    past_names = [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    present_names = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    gen = torch.Generator().manual_seed(0)

    def decoder_case(enc_inputs, new: int, past_len: int) -> dict[str, Any]:
        with torch.no_grad():
            hidden = encoder(**enc_inputs)[0]
        batch = hidden.shape[0]
        ids = torch.randint(4, min(int(model.config.vocab_size), 1000), (batch, new), generator=gen)
        case = {"input_ids": ids, "encoder_hidden_states": hidden}
        if not speech:
            case["encoder_attention_mask"] = enc_inputs["attention_mask"]
        for name in past_names:
            case[name] = torch.randn(batch, heads, past_len, head_size, generator=gen)
        return case

    dec_axes = {
        "input_ids": {0: "batch", 1: "new"},
        "encoder_hidden_states": {0: "batch", 1: "source"},
        **({} if speech else {"encoder_attention_mask": {0: "batch", 1: "source"}}),
        **{n: {0: "batch", 2: "past"} for n in past_names},
    }
    dec_src = SourceModel(
        Decoder().eval(), [*dec_axes],
        ["logits", *present_names], decoder_case(enc_example, 1, 3), decoder_case(enc_second, 2, 0), dec_axes,
        {**description, "part": "decoder"}, spec.name, tokenizer_dir=str(path.resolve()),
        output_axes={"logits": {0: "batch", 1: "new"}, **{n: {0: "batch", 2: "total"} for n in present_names}},
    )  # fmt: skip
    generation = generation_settings(model)
    if speech:
        filled = complete_language_tokens(model, tokenizer)
        generation.update(
            source="audio", language=SPEECH_LANGUAGE, task=SPEECH_TASK, decoder_prompt_ids=speech_prompt(model)
        )
        if filled:
            generation["language_tokens"] = "read from the tokenizer (the generation config has no lang_to_id)"
    return Seq2SeqParts(enc_src, dec_src, generation, model, tokenizer, fe, spec.name)
