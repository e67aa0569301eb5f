"""Encoder-decoders from their own folders: T5, BART and Marian export an encoder and a decoder with
a KV cache, each validated against PyTorch, and greedy generation on ONNX Runtime gives the tokens
transformers' greedy generate gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
# MiniLM's WordPiece tokenizer: [PAD] 0, [CLS] 101, [SEP] 102.
SIZES = dict(vocab_size=30522, d_model=32)


def _t5():
    import transformers

    cfg = transformers.T5Config(
        **SIZES, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=102,
    )  # fmt: skip
    return transformers.T5ForConditionalGeneration(cfg)


def _bart():
    import transformers

    cfg = transformers.BartConfig(
        **SIZES, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=0, bos_token_id=101,
        eos_token_id=102, decoder_start_token_id=102,
    )  # fmt: skip
    return transformers.BartForConditionalGeneration(cfg)


def _marian():
    import transformers

    cfg = transformers.MarianConfig(
        **SIZES, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=0, eos_token_id=102,
        decoder_start_token_id=0,
    )  # fmt: skip
    return transformers.MarianMTModel(cfg)


BUILDERS = {"t5": _t5, "bart": _bart, "marian": _marian}
# What a checkpoint's generation_config.json says; the runtime applies it as transformers' greedy search does.
GENERATION = {
    "t5": dict(decoder_start_token_id=0, pad_token_id=0, eos_token_id=102),
    "bart": dict(
        decoder_start_token_id=102,
        pad_token_id=0,
        bos_token_id=101,
        eos_token_id=102,
        forced_bos_token_id=101,
        forced_eos_token_id=102,
        no_repeat_ngram_size=3,
    ),
    "marian": dict(
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=102, bad_words_ids=[[0]], forced_eos_token_id=102
    ),
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def exported(request, tmp_path_factory, minilm_dir):
    import torch

    torch.manual_seed(0)
    model = BUILDERS[request.param]().eval()
    for key, value in GENERATION[request.param].items():
        setattr(model.generation_config, key, value)
    root = tmp_path_factory.mktemp(request.param)
    folder = root / "model"
    model.save_pretrained(folder, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, folder / name)
    return request.param, model, folder, root


def test_encoder_and_decoder_export_validated_and_generate_like_transformers(exported, capsys):
    name, model, folder, root = exported
    out = root / "onnx"
    code, stdout, err = run_cli(capsys, "export", folder, "-o", out, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert {"encoder.onnx", "decoder.onnx", "generation.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    for part in ("encoder", "decoder"):
        assert report[part]["validation"]["passed"] and report[part]["validation"]["max_abs_diff"] < 1e-3
    past = [c["inputs"]["past.0.key"] for c in report["decoder"]["validation"]["cases"].values()]
    assert sorted(p[2] for p in past) == [0, 3]  # validated from an empty cache and from a filled one
    check = report["generation_check"]
    assert check["identical"] and check["tokens"] > 0
    # A sentence the export's own check never saw, through `edgeinfer run`, against transformers.
    import torch

    from edgeinfer.core.hf_folder import load_tokenizer

    text = "Quantization trades a little accuracy for a lot of speed."
    code, stdout, err = run_cli(capsys, "run", out, "--prompt", text, "--max-tokens", "10", "--json")
    assert code == 0, err
    enc = load_tokenizer(folder, pad_with_eos=False)([text], return_tensors="pt")
    with torch.no_grad():
        want = model.generate(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=10, do_sample=False,
            num_beams=1,
        )[0].tolist()[1:]  # fmt: skip
    got = json.loads(stdout)["tokens"]
    while len(want) > len(got) and want[-1] == 0:
        want.pop()  # transformers pads after an early EOS
    assert got == want and len(got) >= 1
    settings = json.loads((out / "generation.json").read_text())
    from edgeinfer.exporters.seq2seq import GENERATION_KEYS

    used = {k: v for k, v in GENERATION[name].items() if k in GENERATION_KEYS}
    assert {k: settings[k] for k in used} == used
    if name == "bart":
        assert got[0] == 101  # forced_bos_token_id applied, as transformers does


def test_an_encoder_decoder_needs_a_folder_output_and_keeps_an_existing_one(exported, capsys):
    _, _, folder, root = exported
    code, _, err = run_cli(capsys, "export", folder, "-o", root / "one.onnx")
    assert code == 2 and "name the output a folder" in err and not (root / "one.onnx").exists()
    mine = root / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, _, err = run_cli(capsys, "export", folder, "-o", mine, "--force")
    assert code == 2 and "no exported encoder-decoder" in err and (mine / "notes.txt").read_text() == "keep"


@pytest.fixture(scope="module")
def base_export(exported) -> Path:
    from edgeinfer.pipelines.export_seq2seq import export_encoder_decoder

    _, _, folder, root = exported
    export_encoder_decoder(str(folder), root / "base", force=True)
    return root / "base"


def test_a_quantized_encoder_decoder_is_compared_on_generated_tokens(exported, base_export, capsys):
    _, _, folder, root = exported
    base = base_export
    q = root / "int8"
    code, stdout, err = run_cli(capsys, "quantize", base, "-o", q, "--method", "dynamic", "--json")
    assert code == 0, err
    for part in ("encoder.onnx", "decoder.onnx"):
        assert (q / part).stat().st_size < 0.6 * (base / part).stat().st_size
    assert (q / "generation.json").read_bytes() == (base / "generation.json").read_bytes()
    copy = root / "copy"
    shutil.copytree(base, copy, dirs_exist_ok=True)
    code, stdout, err = run_cli(capsys, "compare", base, copy, q, "--limit", "6", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    base_row, same, int8 = report["rows"]
    assert report["sentences"] == 6 and base_row["tokens"] > 0
    assert same["exact_match"] == 1.0 and same["token_agreement"] == 1.0  # the same graphs: the same tokens
    assert 0.0 <= int8["token_agreement"] <= 1.0 and int8["size_bytes"] < 0.6 * base_row["size_bytes"]
    assert int8["speedup"] > 0 and int8["speedup_ci95"][0] <= int8["speedup"] <= int8["speedup_ci95"][1]
    code, _, err = run_cli(capsys, "quantize", base, "-o", root / "s", "--method", "static")
    assert code == 2 and "static INT8 would need calibration data" in err and not (root / "s").exists()
    code, _, err = run_cli(capsys, "quantize", base, "-o", base, "--force")
    assert code == 2 and "the input is never modified" in err


@pytest.mark.parametrize(
    "edit,says",
    [
        ({"eos_token_id": 10**9}, "outside the decoder's vocabulary"),
        ({"suppress_tokens": [-7]}, "outside the decoder's vocabulary"),
        ({"min_length": float("nan")}, "min_length is nan"),
        ({"decoder_start_token_id": "zero"}, "decoder_start_token_id is 'zero'"),
        ({"bad_words_ids": [[1, "x"]]}, "bad_words_ids[0][1]"),
        ({"files": {"encoder": "../../etc/passwd"}}, "a path outside"),
    ],
)
def test_a_hostile_generation_json_is_refused_with_exit_2(base_export, capsys, tmp_path, edit, says):
    copy = tmp_path / "m"
    shutil.copytree(base_export, copy)
    settings = json.loads((copy / "generation.json").read_text())
    (copy / "generation.json").write_text(json.dumps({**settings, **edit}))
    code, _, err = run_cli(capsys, "run", copy, "--prompt", "hello", "--max-tokens", "2")
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_longt5_local_attention_exports_and_transient_global_is_refused(tmp_path, minilm_dir, capsys):
    """LongT5's local attention traces like T5 (greedy generation checked against transformers by
    the export); its transient-global attention counts global blocks from the input length, which
    the trace would fix, so it is refused (exit 2) before anything is traced, not an exit 3 from
    ONNX Runtime's Reshape."""
    import torch
    import transformers

    torch.manual_seed(0)
    for attention in ("local", "transient-global"):
        cfg = transformers.LongT5Config(
            **SIZES, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, decoder_start_token_id=0,
            pad_token_id=0, eos_token_id=102, encoder_attention_type=attention, local_radius=8, global_block_size=4,
        )  # fmt: skip
        model = transformers.LongT5ForConditionalGeneration(cfg).eval()
        for key, value in GENERATION["t5"].items():
            setattr(model.generation_config, key, value)
        folder = tmp_path / attention
        model.save_pretrained(folder, safe_serialization=True)
        for name in TOKENIZER_FILES:
            shutil.copy(minilm_dir / name, folder / name)
        code, _, err = run_cli(capsys, "export", folder, "-o", tmp_path / f"{attention}-onnx")
        if attention == "local":
            assert code == 0, err
            assert (tmp_path / "local-onnx" / "decoder.onnx").is_file()
        else:
            assert code == 2 and "transient-global" in err and 'encoder_attention_type "local"' in err, err
            assert not (tmp_path / "transient-global-onnx").exists()
