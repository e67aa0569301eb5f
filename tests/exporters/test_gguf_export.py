"""Hugging Face -> GGUF export: every registered family converts and passes its own self-check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.core.errors import ConfigError, InputError, OutputExistsError, UnsupportedError, ValidationError
from edgeinfer.exporters.gguf.diagnose import tensor_differences
from edgeinfer.pipelines.export import export_model
from tests.conftest import run_cli
from tests.exporters.llm_factories import ARCHITECTURES, tiny_llm


@pytest.fixture(scope="session")
def tiny_llms(tmp_path_factory, smollm2_hf):
    root = tmp_path_factory.mktemp("tiny-llms")
    return {arch: tiny_llm(arch, root / arch, smollm2_hf) for arch in ARCHITECTURES}


def test_every_registered_architecture_has_a_tiny_test_model():
    from edgeinfer.exporters.gguf import FAMILIES

    assert set(FAMILIES) == set(ARCHITECTURES)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_family_exports_and_matches_transformers(arch, tiny_llms, tmp_path):
    out = tmp_path / "m.gguf"
    art = export_model(str(tiny_llms[arch]), out, outtype="f32", check_tokens=128)
    v = art.validation
    assert v["tokenizer_roundtrip"]["equal"] and v["tokenizer_roundtrip"]["hf_tokens"] > 100
    assert v["logits_parity"]["top1_agreement"] >= 0.99
    assert v["logits_parity"]["kl_mean"] < 1e-4
    assert json.loads(Path(str(out) + ".edgeinfer.json").read_text())["format"] == "gguf"
    # The self-check's diagnosis blames no tensor of a right conversion (Gemma's 1 + w norms included).
    differences, compared, _ = tensor_differences(out, tiny_llms[arch])
    assert differences == [] and compared > 10


@pytest.mark.slow
def test_smollm2_exports_to_f16_then_quantizes_and_generates(smollm2_hf, tmp_path, capsys):
    """The issue's path for a new user: export with the self-check, quantize to Q4_K_M, run it."""
    f16 = tmp_path / "smollm2-f16.gguf"
    code, out, err = run_cli(capsys, "export", smollm2_hf, "-o", f16, "--json")
    assert code == 0, err
    report = json.loads(out)
    parity = report["validation"]["logits_parity"]
    assert parity["top1_agreement"] >= 0.98 and parity["kl_mean"] <= 1e-3
    assert report["meta"]["tokenizer"]["chat_template"]
    assert report["validation"]["tokenizer_roundtrip"]["equal"]
    q4 = tmp_path / "smollm2-q4_k_m.gguf"
    code, _, err = run_cli(capsys, "quantize", f16, "-o", q4, "--method", "Q4_K_M")
    assert code == 0, err
    assert q4.stat().st_size < 0.5 * f16.stat().st_size
    code, out, err = run_cli(capsys, "run", q4, "--prompt", "The capital of France is", "--max-tokens", "8")
    assert code == 0, err
    assert "Paris" in out


@pytest.mark.slow
@pytest.mark.parametrize("outtype,expected", [("q8_0", "Q8_0"), ("bf16", "BF16"), ("f16", "F16")])
def test_outtype_sets_the_tensor_types(outtype, expected, tiny_llms, tmp_path):
    art = export_model(str(tiny_llms["LlamaForCausalLM"]), tmp_path / "m.gguf", outtype=outtype, check_tokens=64)
    types = art.meta["tensor_types"]
    assert types.get(expected, 0) > 0
    assert types["F32"] > 0  # norms stay float32
    assert art.validation["logits_parity"]["top1_agreement"] >= 0.93


def test_a_converter_that_gets_the_weights_wrong_is_caught_and_nothing_is_written(tiny_llms, tmp_path, monkeypatch):
    from edgeinfer.exporters.gguf.llama import Llama

    # Drop the Q/K reordering that llama.cpp's RoPE layout needs: the file loads and runs, wrongly.
    monkeypatch.setattr(Llama, "tensors", lambda self, name, data: iter([(self.gguf_name(name), data)]))
    out = tmp_path / "broken.gguf"
    with pytest.raises(ValidationError, match="KL divergence|top-1") as failed:
        export_model(str(tiny_llms["LlamaForCausalLM"]), out, outtype="f32", check_tokens=64)
    assert not out.exists() and not list(tmp_path.iterdir())
    # Every tensor holds its checkpoint's values, only in another order: the message says where to look.
    assert "hold the checkpoint's values (up to order)" in str(failed.value) and "layout" in str(failed.value)


def test_a_self_check_failure_names_the_tensor_whose_values_are_wrong(tiny_llms, tmp_path, monkeypatch):
    """A converter that writes one tensor's values wrongly (scaled, here) fails the self-check, and the
    message names that tensor and its checkpoint name, not only the KL figure."""
    from edgeinfer.exporters.gguf.llama import Llama

    right = Llama.tensors

    def scale_one(self, name, data):
        for gguf_name, values in right(self, name, data):
            yield gguf_name, values * 3 if gguf_name == "blk.1.ffn_down.weight" else values

    monkeypatch.setattr(Llama, "tensors", scale_one)
    with pytest.raises(ValidationError, match="KL divergence|top-1") as failed:
        export_model(str(tiny_llms["LlamaForCausalLM"]), tmp_path / "m.gguf", outtype="f32", check_tokens=64)
    message = str(failed.value)
    assert (
        "the outputs part at" in message
        and "blk.1.ffn_down.weight (model.layers.1.mlp.down_proj.weight, F32)" in message
    )
    assert message.count("values differ") == 1  # no other tensor blamed


def test_a_wrong_pre_tokenizer_is_caught_by_the_round_trip(tiny_llms, tmp_path, monkeypatch):
    import edgeinfer.exporters.gguf.tokenizer as tok

    monkeypatch.setattr(tok, "bpe_pre_tokenizer", lambda tj: "gpt-2")  # Qwen2 needs its own split rule
    with pytest.raises(ValidationError, match="tokenizes the sample differently"):
        export_model(str(tiny_llms["Qwen2ForCausalLM"]), tmp_path / "q.gguf", outtype="f32", check_tokens=32)


def _with_config(tiny_llms, tmp_path, **changes) -> Path:
    src = tmp_path / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(tiny_llms["LlamaForCausalLM"], src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, **changes}))
    return src


def test_unregistered_architecture_lists_supported_and_names_the_causal_lm_head(tiny_llms, tmp_path):
    src = _with_config(tiny_llms, tmp_path, architectures=["LlamaForSequenceClassification"])
    with pytest.raises(
        UnsupportedError,
        match="another head on the same model \\(LlamaForCausalLM converts\\).*Supported: .*GPT2LMHeadModel",
    ):
        export_model(str(src), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize(
    ("changes", "said"),
    [({"norm_topk_prob": True}, "renormalises its top-k"), ({"mlp_only_layers": [0]}, "mixes dense and sparse")],
)
def test_qwen2_moe_variants_llama_cpp_computes_differently_are_refused(tiny_llms, tmp_path, changes, said):
    src = tmp_path / "src"
    shutil.copytree(tiny_llms["Qwen2MoeForCausalLM"], src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, **changes}))
    with pytest.raises(UnsupportedError, match=said):
        export_model(str(src), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["MixtralForCausalLM", "Qwen2MoeForCausalLM"])
def test_experts_saved_fused_by_transformers_5_convert_like_experts_saved_one_by_one(arch, tiny_llms, tmp_path):
    """transformers 5 holds experts as one gate_up_proj / down_proj per layer (no .weight); a folder
    saved from that state dict converts to the same tensors as the one-tensor-per-expert layout."""
    import gguf
    import transformers
    from safetensors.torch import save_file

    src = tmp_path / "fused"
    shutil.copytree(tiny_llms[arch], src)
    model = getattr(transformers, arch).from_pretrained(str(tiny_llms[arch]))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any(k.endswith("experts.gate_up_proj") for k in state)
    (src / "model.safetensors").unlink()
    save_file(state, str(src / "model.safetensors"), metadata={"format": "pt"})
    fused = export_model(str(src), tmp_path / "fused.gguf", outtype="f32", check_tokens=64)
    split = export_model(str(tiny_llms[arch]), tmp_path / "split.gguf", outtype="f32", check_tokens=64)
    assert fused.validation["logits_parity"]["kl_mean"] < 1e-4

    def tensors(path):
        return {t.name: np.array(t.data) for t in gguf.GGUFReader(str(path)).tensors}

    a, b = tensors(fused.path), tensors(split.path)
    assert set(a) == set(b) and any(name.endswith("ffn_gate_exps.weight") for name in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_directory_without_config_or_weights_is_refused(tiny_llms, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(capsys, "export", empty, "-o", tmp_path / "x.gguf")
    assert code == 2 and "no config.json" in err
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_llms["LlamaForCausalLM"], no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(InputError, match="no .safetensors weights"):
        export_model(str(no_weights), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_truncated_safetensors_is_refused_before_converting(tiny_llms, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_llms["LlamaForCausalLM"], src)
    weights = src / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputError, match="model.safetensors is truncated"):
        export_model(str(src), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_existing_output_is_kept_and_onnx_options_are_refused(tiny_llms, tmp_path):
    out = tmp_path / "x.gguf"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        export_model(str(tiny_llms["LlamaForCausalLM"]), out)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(ConfigError, match="ONNX options"):
        export_model(str(tiny_llms["LlamaForCausalLM"]), tmp_path / "y.gguf", static_shapes=True)
    with pytest.raises(ConfigError, match="format='gguf' but the output"):
        export_model(str(tiny_llms["LlamaForCausalLM"]), tmp_path / "y.onnx", format="gguf")
    with pytest.raises(ConfigError, match="outtype Q4_K_M is a llama.cpp quantization; export writes f32, f16"):
        export_model(str(tiny_llms["LlamaForCausalLM"]), tmp_path / "y.gguf", outtype="q4_k_m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gguf"]


# -- LoRA ----------------------------------------------------------------------------------


def _lora(base: Path, out: Path, targets=("q_proj", "v_proj", "down_proj")) -> Path:
    import peft
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    # init_lora_weights=False gives B random weights, so the adapter changes the model at once.
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    torch.manual_seed(1)
    tuned = peft.get_peft_model(model, cfg)
    tuned.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def llama_lora(tiny_llms, tmp_path_factory):
    return _lora(tiny_llms["LlamaForCausalLM"], tmp_path_factory.mktemp("lora") / "adapter")


def test_lora_merge_equals_peft_merge_and_unload(tiny_llms, llama_lora):
    import peft
    import torch
    import transformers

    from edgeinfer.exporters.gguf.checkpoint import Checkpoint
    from edgeinfer.exporters.gguf.lora import LoraAdapter

    base = tiny_llms["LlamaForCausalLM"]
    merged = (
        peft.PeftModel.from_pretrained(
            transformers.AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32), str(llama_lora)
        )
        .merge_and_unload()
        .state_dict()
    )
    ckpt = Checkpoint(base)
    lora = LoraAdapter(llama_lora, {n: ckpt.shape(n) for n in ckpt.names()})
    assert len(lora.pairs) == 3 * 2  # three target modules in each of two layers
    for name in lora.pairs:
        ours = lora.merge(name, ckpt.load(name))
        assert not torch.allclose(ours, ckpt.load(name))
        torch.testing.assert_close(ours, merged[name], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_export_with_adapter_matches_the_adapted_model(tiny_llms, llama_lora, tmp_path, capsys):
    from edgeinfer.runtime.llama import LlamaRunner, LlamaSettings

    base = tiny_llms["LlamaForCausalLM"]
    tuned, plain = tmp_path / "tuned.gguf", tmp_path / "plain.gguf"
    code, out, err = run_cli(
        capsys,
        "export",
        base,
        "-o",
        tuned,
        "--adapter",
        llama_lora,
        "--outtype",
        "f32",
        "--check-tokens",
        "64",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["config"]["adapter"]["layers"] == 6
    export_model(str(base), plain, outtype="f32", check_tokens=64)
    tokens = list(range(10, 60))
    a = LlamaRunner(tuned, LlamaSettings(n_ctx=64), logits_all=True).sequence_log_probs(tokens)
    b = LlamaRunner(plain, LlamaSettings(n_ctx=64), logits_all=True).sequence_log_probs(tokens)
    assert np.abs(a - b).max() > 1e-2  # the adapter really changed the model


def test_adapter_for_another_base_is_refused(tiny_llms, llama_lora, smollm2_hf, tmp_path):
    wider = tiny_llm("LlamaForCausalLM", tmp_path / "wider", smollm2_hf, hidden_size=96)
    with pytest.raises(
        InputError,
        match=r"does not match this base model: .* is \[96, \d+\] in the base, the adapter expects \[64, \d+\]",
    ):
        export_model(str(wider), tmp_path / "x.gguf", adapter=str(llama_lora))
    with pytest.raises(InputError, match="does not match this base model: it adapts model.layers"):
        export_model(str(tiny_llms["GPT2LMHeadModel"]), tmp_path / "x.gguf", adapter=str(llama_lora))
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.slow
def test_routers_and_state_space_parameters_stay_float32_in_a_q8_0_export(tiny_llms, tmp_path):
    """llama.cpp reads routers, the SSM convolution and A/D only as F32 (as its converter writes them)."""
    import gguf

    for arch, kept in [("MixtralForCausalLM", "ffn_gate_inp"), ("MambaForCausalLM", "ssm_conv1d")]:
        art = export_model(str(tiny_llms[arch]), tmp_path / f"{arch}.gguf", outtype="q8_0", check_tokens=64)
        assert art.validation["logits_parity"]["top1_agreement"] >= 0.9
        types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(art.path)).tensors}
        assert types[f"blk.0.{kept}.weight"] == "F32"
        assert "Q8_0" in types.values()
        if arch == "MambaForCausalLM":
            assert types["blk.0.ssm_a"] == "F32" and types["blk.0.ssm_d"] == "F32"
        else:
            assert types["blk.0.ffn_gate_exps.weight"] == "Q8_0"
