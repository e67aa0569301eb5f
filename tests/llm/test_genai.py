"""LLMs as ONNX: a Hugging Face causal LM exported to an ONNX Runtime GenAI folder by its model
builder, checked against transformers before it is kept, run, and scored in the same `compare`
table as GGUF files of the same model (the same token ids, KL, top-1, perplexity, speed)."""

from __future__ import annotations

import json
import shutil

import pytest

from edgeinfer.core.errors import InputError, OutputExistsError, ValidationError
from tests.conftest import run_cli
from tests.exporters.llm_factories import tiny_llm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, smollm2_hf):
    return tiny_llm("LlamaForCausalLM", tmp_path_factory.mktemp("genai") / "llama", smollm2_hf)


@pytest.fixture(scope="module")
def exported(tiny_llama, tmp_path_factory):
    from edgeinfer.pipelines.export_genai import export_genai

    root = tmp_path_factory.mktemp("genai-out")
    return {p: export_genai(str(tiny_llama), root / p, precision=p, check_tokens=128) for p in ("fp32", "int4")}


def test_the_onnx_llm_matches_transformers_and_int4_is_smaller(exported):
    fp32, int4 = exported["fp32"].validation["logits_parity"], exported["int4"].validation["logits_parity"]
    assert fp32["kl_mean"] < 1e-4 and fp32["top1_agreement"] >= 0.99  # exact up to float rounding
    assert int4["kl_mean"] > fp32["kl_mean"]  # quantization shows, within its tolerance

    def size(folder):
        return sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("model.onnx"))

    # (the float32 embedding table, 49152 x 64, stays: the tiny model is mostly vocabulary)
    assert size(exported["int4"].folder) < 0.7 * size(exported["fp32"].folder)
    record = json.loads((exported["int4"].folder / "edgeinfer.json").read_text())
    assert record["precision"] == "int4" and record["validation"]["logits_parity"]["tokens"] == 128


def test_run_and_one_compare_table_across_formats(exported, tiny_llama, tmp_path, capsys):
    code, out, err = run_cli(
        capsys, "run", exported["int4"].folder, "--prompt", "Four score and", "--max-tokens", "6", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["generated_tokens"] == 6
    code, out, err = run_cli(capsys, "bench", exported["int4"].folder, "--n-prompt", "32", "--n-gen", "8", "--json")
    assert code == 0, err
    speed = json.loads(out)
    assert speed["pp_tokens_per_s"] > 0 and speed["tg_tokens_per_s"] > 0 and speed["tensor_types"]["int4"] > 0
    f16 = tmp_path / "tiny-f16.gguf"
    code, _, err = run_cli(capsys, "export", tiny_llama, "-o", f16)
    assert code == 0, err
    code, out, err = run_cli(
        capsys, "compare", f16, exported["fp32"].folder, exported["int4"].folder, "--max-tokens", "512", "--json"
    )
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["architecture"] for r in rows[1:]] == ["onnx-genai llama", "onnx-genai llama"]
    fp32, int4 = rows[1], rows[2]
    assert fp32["kl_mean"] < 1e-3 and fp32["top1_agreement"] > 0.98  # the same model in another runtime
    assert int4["kl_mean"] > fp32["kl_mean"] and int4["file_size_bytes"] < fp32["file_size_bytes"]
    assert all(r["tg_tokens_per_s"] > 0 and r["perplexity"] > 1 and r["peak_memory_mb"] > 0 for r in rows)
    # A GenAI folder is a baseline too: an ONNX-only user compares its INT4 with its FP32 on text.
    code, out, err = run_cli(
        capsys, "compare", exported["fp32"].folder, exported["int4"].folder, "--max-tokens", "256", "--json"
    )
    assert code == 0, err
    base, cand = json.loads(out)["rows"]
    assert base["architecture"] == cand["architecture"] == "onnx-genai llama" and base["perplexity"] > 1
    assert cand["kl_mean"] > 0 and cand["top1_agreement"] < 1.0 + 1e-9 and cand["tg_tokens_per_s"] > 0


def test_a_broken_conversion_is_caught_and_nothing_is_written(tiny_llama, tmp_path, monkeypatch):
    import edgeinfer.exporters.genai as genai
    from edgeinfer.pipelines.export_genai import export_genai

    real = genai.build_genai

    def broken(source, output, precision, block_size):
        import numpy as np

        real(source, output, precision, block_size)
        data = output / "model.onnx.data"  # other weights of the same layout: loads and runs, wrongly
        n = data.stat().st_size // 4
        data.write_bytes((np.random.default_rng(0).standard_normal(n) * 0.05).astype(np.float32).tobytes())

    monkeypatch.setattr(genai, "build_genai", broken)
    with pytest.raises(ValidationError, match="disagree with transformers"):
        export_genai(str(tiny_llama), tmp_path / "bad", precision="fp32", check_tokens=64)
    assert not (tmp_path / "bad").exists()


def test_an_existing_output_is_kept_and_an_unknown_architecture_says_so(exported, tiny_llama, tmp_path, capsys):
    from edgeinfer.pipelines.export_genai import export_genai

    with pytest.raises(OutputExistsError):
        export_genai(str(tiny_llama), exported["int4"].folder)
    odd = tmp_path / "odd"
    shutil.copytree(tiny_llama, odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "architectures": ["NoSuchForCausalLM"]}))
    code, _, err = run_cli(capsys, "export", odd, "-o", tmp_path / "odd-onnx")
    assert code == 2 and "model builder could not convert" in err
    assert not (tmp_path / "odd-onnx").exists()


@pytest.mark.parametrize(
    "edit,says",
    [
        (lambda f: _edit_config(f, lambda c: c["model"]["decoder"].update(filename="../../etc/passwd")), "outside"),
        (lambda f: _edit_config(f, lambda c: c["model"]["decoder"].update(filename="gone.onnx")), "not in"),
        (lambda f: _edit_config(f, lambda c: c.update(model=[])), "no model.decoder"),
        (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer.json"),
        (lambda f: (f / "genai_config.json").write_text("{" * 50_000), "not valid JSON"),
    ],
)
def test_a_hostile_genai_folder_is_refused_with_exit_2(exported, tmp_path, capsys, edit, says):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(exported["int4"].folder, copy)
    edit(copy)
    code, _, err = run_cli(capsys, "run", copy, "--prompt", "Hi", "--max-tokens", "2")
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def _edit_config(folder, change) -> None:
    config = json.loads((folder / "genai_config.json").read_text())
    change(config)
    (folder / "genai_config.json").write_text(json.dumps(config))


def test_a_float_genai_folder_quantizes_to_int4_with_calib_and_bad_requests_exit_2(exported, tmp_path, capsys):
    """`quantize FP32_FOLDER -o OUT --method int4 --calib TEXT`: edgeinfer's recipe on a folder the
    builder already wrote, held to that folder's own log-probs; an INT4 folder or another method is refused."""
    from edgeinfer.examples import SENTENCES

    out = tmp_path / "int4"
    code, stdout, err = run_cli(
        capsys, "quantize", exported["fp32"].folder, "-o", out, "--method", "int4", "--calib", SENTENCES, "--json"
    )
    assert code == 0, err
    report = json.loads(stdout)
    assert report["quantization"]["method"] == "gptq" and report["quantization"]["calibration_tokens"] > 500
    placement = report["quantization"]["placement"]  # the layers' bits placed by their measured damage
    assert placement["by"] == "measured sensitivity" and 0 < placement["bytes"] <= placement["budget_bytes"]
    assert report["validation"]["logits_parity"]["kl_mean"] <= 2.5
    record = json.loads((out / "edgeinfer.json").read_text())
    assert record["recipe"] == "edgeinfer" and record["source"] == str(exported["fp32"].folder.resolve())
    code, _, err = run_cli(capsys, "quantize", exported["int4"].folder, "-o", tmp_path / "again", "--method", "int4")
    assert code == 2 and "already quantized" in err and not (tmp_path / "again").exists()
    code, _, err = run_cli(capsys, "quantize", exported["fp32"].folder, "-o", tmp_path / "d", "--method", "dynamic")
    assert code == 2 and "is quantized to int4" in err
    code, _, err = run_cli(capsys, "quantize", exported["fp32"].folder, "-o", out, "--method", "int4")
    assert code == 2 and "exists" in err  # the first result is kept


def test_int4_calibration_reads_the_decoder_names_as_onnxruntime_genai_does(exported, tmp_path, capsys):
    """A float folder whose genai_config.json names no decoder inputs or outputs runs with
    onnxruntime-genai's default names (it used to end in a KeyError); a name that cannot be one is
    refused."""
    from edgeinfer.examples import SENTENCES
    from edgeinfer.pipelines.genai_int4 import decoder_names

    plain = tmp_path / "plain"
    shutil.copytree(exported["fp32"].folder, plain)
    _edit_config(plain, lambda c: [c["model"]["decoder"].pop(k) for k in ("inputs", "outputs")])
    code, _, err = run_cli(capsys, "quantize", plain, "-o", tmp_path / "a", "--method", "int4", "--calib", SENTENCES)
    assert code == 0, err
    assert decoder_names({})["past_key_names"] == "past_key_values.%d.key"
    for bad in ({"inputs": {"past_key_names": "past.key"}}, {"outputs": {"logits": 5}}):
        with pytest.raises(InputError, match="export the model again"):
            decoder_names(bad)


def test_gemma2_sliding_window_exports_and_scores_with_a_cache_a_window_long(smollm2_hf, tmp_path):
    """Gemma 2 alternates sliding-window layers; ONNX Runtime's GroupQueryAttention needs a cache at
    least one window long, so the check's 64 tokens run in a 512-token cache, not a 65-token one."""
    from edgeinfer.pipelines.export_genai import export_genai

    src = tiny_llm("Gemma2ForCausalLM", tmp_path / "gemma2", smollm2_hf)
    result = export_genai(str(src), tmp_path / "g2", precision="fp32", check_tokens=64)
    parity = result.validation["logits_parity"]
    assert parity["kl_mean"] < 1e-3 and parity["top1_agreement"] >= 0.98
    config = json.loads((tmp_path / "g2" / "genai_config.json").read_text())
    assert config["model"]["decoder"]["sliding_window"]["window_size"] == 512


def test_gemma3_is_refused_naming_the_rope_layout_and_the_gguf_route(smollm2_hf, tmp_path, capsys):
    src = tiny_llm("Gemma3ForCausalLM", tmp_path / "gemma3", smollm2_hf)
    code, _, err = run_cli(capsys, "export", src, "-o", tmp_path / "g3", "--precision", "fp32")
    assert code == 2 and "RoPE per attention type" in err and "-o model.gguf" in err
    assert "KeyError" not in err and not (tmp_path / "g3").exists()
