"""Whisper from its own folder: log-mel features into an encoder, a decoder with a KV cache, each
validated against PyTorch; greedy transcription on ONNX Runtime (prompt of start, language, task
and no-timestamps tokens; suppressed tokens) gives transformers' tokens; quantized and compared."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.core.errors import InputError
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SPECIALS = (
    "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>",
)  # fmt: skip


def tiny_whisper(out: Path, bpe_source: Path) -> Path:
    """A 2-layer Whisper with 16 mel bins and 1 s chunks (100 frames), a real byte-level BPE
    tokenizer (SmolLM2's first 2,000 tokens and their merges) plus Whisper's special tokens, a
    feature extractor and a multilingual generation config, as `save_pretrained` writes them."""
    import torch
    import transformers as t

    out.mkdir(parents=True)
    tj = json.loads((bpe_source / "tokenizer.json").read_text())
    vocab = dict(list(tj["model"]["vocab"].items())[:2000])
    pairs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tj["model"]["merges"]]
    merges = [p for p in pairs if all(x in vocab for x in p) and "".join(p) in vocab]
    tok = t.WhisperTokenizer(vocab=vocab, merges=merges)
    tok.add_tokens([t.AddedToken(s, special=True, normalized=False) for s in SPECIALS], special_tokens=True)
    tok.save_pretrained(str(out))
    ids = {s: tok.convert_tokens_to_ids(s) for s in SPECIALS}
    t.WhisperFeatureExtractor(feature_size=16, chunk_length=1).save_pretrained(str(out))
    eot = ids["<|endoftext|>"]
    cfg = t.WhisperConfig(
        vocab_size=len(tok), num_mel_bins=16, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=50, max_target_positions=64, init_std=0.3,  # wide weights: varied tokens
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
    )  # fmt: skip
    cfg.architectures = ["WhisperForConditionalGeneration"]
    torch.manual_seed(0)
    model = t.WhisperForConditionalGeneration(cfg).eval()
    gen = model.generation_config
    gen.lang_to_id = {"<|en|>": ids["<|en|>"], "<|de|>": ids["<|de|>"]}
    gen.task_to_id = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    gen.no_timestamps_token_id = ids["<|notimestamps|>"]
    gen.is_multilingual = True
    gen.suppress_tokens = [5, 7, 11]
    gen.begin_suppress_tokens = [tok.convert_tokens_to_ids("Ġ"), eot]
    gen._from_model_config = False  # else transformers rebuilds it from config.json on load
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory, smollm2_hf):
    return tiny_whisper(tmp_path_factory.mktemp("whisper") / "model", smollm2_hf)


@pytest.fixture(scope="module")
def exported(whisper_dir, tmp_path_factory):
    from edgeinfer.pipelines.export_seq2seq import export_encoder_decoder

    out = tmp_path_factory.mktemp("whisper-onnx") / "whisper"
    return export_encoder_decoder(str(whisper_dir), out)


def _wav(path: Path, rate: int, seconds: float = 1.5) -> Path:
    from edgeinfer.core.audio import synthetic_clips

    clip = (synthetic_clips(1, seconds, rate, seed=7)[0] * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.stack([clip, clip], 1).tobytes())
    return path


def test_whisper_exports_both_graphs_and_transcribes_like_transformers(exported):
    assert exported.task == "speech-seq2seq"
    folder = exported.folder
    for name in ("encoder.onnx", "decoder.onnx", "generation.json", "preprocessor_config.json", "tokenizer.json"):
        assert (folder / name).is_file(), name
    assert exported.encoder.validation["max_abs_diff"] < 1e-4
    assert exported.decoder.validation["max_abs_diff"] < 1e-4
    dec_inputs = set(exported.decoder.validation["cases"]["example"]["inputs"])
    assert "encoder_attention_mask" not in dec_inputs  # Whisper's decoder takes no encoder mask
    gen = json.loads((folder / "generation.json").read_text())
    assert gen["source"] == "audio" and len(gen["decoder_prompt_ids"]) == 4
    assert gen["suppress_tokens"] == [5, 7, 11]
    check = exported.check
    assert check["identical"] and check["tokens"] == 3 * 16
    tokens = [t for c in check["cases"] for t in c["onnx"]]
    assert len(set(tokens)) > 10  # a real sequence, not one token repeated
    assert not set(tokens) & {5, 7, 11}  # suppressed everywhere


def test_run_transcribes_a_wav_at_another_rate_and_refuses_text(exported, tmp_path, capsys):
    wav = _wav(tmp_path / "clip.wav", 22_050)  # stereo, resampled to 16 kHz
    code, out, err = run_cli(capsys, "run", exported.folder, "--audio", wav, "--max-tokens", "8", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert len(result["tokens"]) == 8 and result["providers"] == ["CPUExecutionProvider"]
    code, _, err = run_cli(capsys, "run", exported.folder, "--prompt", "hello")
    assert code == 2 and "--audio" in err
    (tmp_path / "not.wav").write_bytes(b"RIFF....WAVEjunk")
    code, _, err = run_cli(capsys, "run", exported.folder, "--audio", tmp_path / "not.wav")
    assert code == 2 and "not a PCM WAV file" in err


def test_quantized_whisper_is_compared_on_tokens_and_word_error_rate(exported, tmp_path, capsys):
    out = tmp_path / "whisper-fp16"
    code, stdout, err = run_cli(capsys, "quantize", exported.folder, "-o", out, "--method", "fp16", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["task"] == "speech-seq2seq" and (out / "preprocessor_config.json").is_file()
    base, fp16 = result["rows"]
    assert fp16["size_bytes"] < 0.6 * base["size_bytes"]
    assert fp16["token_agreement"] >= 0.5 and 0.0 <= fp16["wer"] <= 1.0
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    _wav(wavs / "a.wav", 16_000)
    _wav(wavs / "b.wav", 8_000, seconds=0.7)
    code, stdout, err = run_cli(capsys, "compare", exported.folder, exported.folder, "--audio", wavs, "--json")
    assert code == 0, err
    same = json.loads(stdout)
    assert same["sentences"] == 2 and same["rows"][1]["exact_match"] == 1.0 and same["rows"][1]["wer"] == 0.0


def test_a_whisper_folder_without_its_tokenizer_or_feature_extractor_is_refused(whisper_dir, tmp_path):
    from edgeinfer.pipelines.export_seq2seq import export_encoder_decoder

    no_tok = tmp_path / "no-tok"
    shutil.copytree(whisper_dir, no_tok, ignore=shutil.ignore_patterns("tokenizer*"))
    with pytest.raises(InputError, match="no tokenizer files"):
        export_encoder_decoder(str(no_tok), tmp_path / "a")
    no_fe = tmp_path / "no-fe"
    shutil.copytree(whisper_dir, no_fe, ignore=shutil.ignore_patterns("preprocessor_config.json"))
    with pytest.raises(InputError, match="no preprocessor_config.json"):
        export_encoder_decoder(str(no_fe), tmp_path / "b")
    other = tmp_path / "other-fe"
    shutil.copytree(whisper_dir, other)
    fe = json.loads((other / "preprocessor_config.json").read_text())
    (other / "preprocessor_config.json").write_text(json.dumps({**fe, "feature_size": 80}))
    with pytest.raises(InputError, match="another model's feature extractor"):
        export_encoder_decoder(str(other), tmp_path / "c")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_a_generation_config_without_language_maps_takes_them_from_the_tokenizer(exported, whisper_dir, tmp_path):
    """Older and fine-tuned Whisper folders have no lang_to_id / task_to_id; transformers' generate
    then refuses a language. The tokenizer's own <|en|> and <|transcribe|> give the same prompt."""
    import shutil

    from edgeinfer.pipelines.export_seq2seq import export_encoder_decoder

    src = tmp_path / "old-whisper"
    shutil.copytree(whisper_dir, src)
    config = json.loads((src / "generation_config.json").read_text())
    for key in ("lang_to_id", "task_to_id", "is_multilingual"):
        config.pop(key, None)
    (src / "generation_config.json").write_text(json.dumps(config))
    result = export_encoder_decoder(str(src), tmp_path / "onnx")
    gen = json.loads((tmp_path / "onnx" / "generation.json").read_text())
    original = json.loads((exported.folder / "generation.json").read_text())
    assert gen["decoder_prompt_ids"] == original["decoder_prompt_ids"]
    assert "tokenizer" in gen["language_tokens"]
    assert result.check["identical"] and result.check["tokens"] == 3 * 16
