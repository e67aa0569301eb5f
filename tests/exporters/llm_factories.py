"""Tiny random-weight Hugging Face causal LMs, one per registered GGUF family, with real tokenizers.

Byte-level BPE families reuse SmolLM2's tokenizer; SentencePiece families get a small SPM model
trained here on the shipped public-domain text (Llama-style with a dummy prefix, Gemma-style without).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from edgeinfer.examples import PUBLIC_DOMAIN_TEXT

SMALL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    initializer_range=0.08,
)


def _spm(out: Path, dummy_prefix: bool, tokenizer_class: str, specials: tuple[str, ...] = ()) -> int:
    import sentencepiece as spm

    buf = io.BytesIO()
    text = PUBLIC_DOMAIN_TEXT.read_text(encoding="utf-8")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.splitlines()),
        model_writer=buf,
        vocab_size=512,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=dummy_prefix,
        allow_whitespace_only_pieces=True,
        minloglevel=2,
    )
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    # Chat models append their control tokens after the SentencePiece vocabulary (Phi-3's <|end|>).
    added = {t: 512 + i for i, t in enumerate(specials)}
    if added:
        (out / "added_tokens.json").write_text(json.dumps(added))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": tokenizer_class,
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
                "added_tokens_decoder": {
                    str(i): {
                        "content": t,
                        "special": True,
                        "lstrip": False,
                        "rstrip": False,
                        "normalized": False,
                        "single_word": False,
                    }
                    for t, i in added.items()
                },
            }
        )
    )
    return 512 + len(added)


# Qwen2's split rule (every digit alone), put in front of the byte-level step as Qwen2 ships it.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _bpe(out: Path, bpe_source: Path, qwen2_split: bool = False) -> int:
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (bpe_source / name).is_file():
            shutil.copy(bpe_source / name, out / name)
    tokenizer = json.loads((out / "tokenizer.json").read_text())
    if qwen2_split:
        tokenizer["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        }
        (out / "tokenizer.json").write_text(json.dumps(tokenizer))
    return len(tokenizer["model"]["vocab"])


def _configs():
    import transformers as t

    return {
        "LlamaForCausalLM": (t.LlamaConfig, t.LlamaForCausalLM, "bpe", {}),
        "MistralForCausalLM": (t.MistralConfig, t.MistralForCausalLM, "spm-llama", {"sliding_window": None}),
        "Qwen2ForCausalLM": (t.Qwen2Config, t.Qwen2ForCausalLM, "bpe-qwen2", {"tie_word_embeddings": True}),
        "GemmaForCausalLM": (t.GemmaConfig, t.GemmaForCausalLM, "spm-gemma", {"head_dim": 16}),
        "Gemma2ForCausalLM": (
            t.Gemma2Config,
            t.Gemma2ForCausalLM,
            "spm-gemma",
            {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 512},
        ),
        "Phi3ForCausalLM": (t.Phi3Config, t.Phi3ForCausalLM, "spm-phi3", {"pad_token_id": 0}),
        "MixtralForCausalLM": (
            t.MixtralConfig,
            t.MixtralForCausalLM,
            "spm-llama",
            {"num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": None},
        ),
        "Qwen2MoeForCausalLM": (
            t.Qwen2MoeConfig,
            t.Qwen2MoeForCausalLM,
            "bpe-qwen2",
            {
                "num_experts": 4,
                "num_experts_per_tok": 2,
                "moe_intermediate_size": 64,
                "shared_expert_intermediate_size": 128,
            },
        ),
        "MambaForCausalLM": (
            t.MambaConfig,
            t.MambaForCausalLM,
            "bpe",
            {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "state_size": 16},
        ),
        "GPT2LMHeadModel": (
            t.GPT2Config,
            t.GPT2LMHeadModel,
            "bpe",
            {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 1024},
        ),
    }


ARCHITECTURES = list(_configs())


def _llamacpp_configs():
    """Families edgeinfer converts through llama.cpp's own converter (exporters/gguf/llamacpp.py)."""
    import transformers as t

    return {
        "Qwen3ForCausalLM": (t.Qwen3Config, t.Qwen3ForCausalLM, "bpe", {"head_dim": 16, "tie_word_embeddings": True}),
        "Gemma3ForCausalLM": (
            t.Gemma3TextConfig,
            t.Gemma3ForCausalLM,
            "spm-gemma",
            {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 512},
        ),
        # llama.cpp's Phi-2 and Falcon take the FFN width as 4x the hidden size, as the real models have it.
        "PhiForCausalLM": (t.PhiConfig, t.PhiForCausalLM, "bpe", {"num_key_value_heads": 4, "intermediate_size": 256}),
        "Olmo2ForCausalLM": (t.Olmo2Config, t.Olmo2ForCausalLM, "bpe", {}),
        "GraniteForCausalLM": (t.GraniteConfig, t.GraniteForCausalLM, "bpe", {}),
        "FalconForCausalLM": (
            t.FalconConfig,
            t.FalconForCausalLM,
            "bpe",
            {"num_kv_heads": 2, "new_decoder_architecture": True, "ffn_hidden_size": 256},
        ),
        "StableLmForCausalLM": (t.StableLmConfig, t.StableLmForCausalLM, "bpe", {}),
        "GPTNeoXForCausalLM": (t.GPTNeoXConfig, t.GPTNeoXForCausalLM, "bpe", {}),
        "Qwen3MoeForCausalLM": (
            t.Qwen3MoeConfig,
            t.Qwen3MoeForCausalLM,
            "bpe",
            {
                "head_dim": 16,
                "num_experts": 4,
                "num_experts_per_tok": 2,
                "moe_intermediate_size": 64,
                "norm_topk_prob": True,  # as Qwen3-30B-A3B ships; llama.cpp always renormalises
            },
        ),
        "Mamba2ForCausalLM": (
            t.Mamba2Config,
            t.Mamba2ForCausalLM,
            "bpe",
            {"num_heads": 8, "head_dim": 16, "state_size": 16, "n_groups": 1, "expand": 2, "chunk_size": 64},
        ),
    }


LLAMACPP_ARCHITECTURES = list(_llamacpp_configs())


def tiny_llm(architecture: str, out: Path, bpe_source: Path, seed: int = 0, **overrides) -> Path:
    import torch

    config_cls, model_cls, tokenizer, extra = {**_configs(), **_llamacpp_configs()}[architecture]
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer.startswith("bpe"):
        vocab = _bpe(out, bpe_source, qwen2_split=tokenizer == "bpe-qwen2")
    else:
        specials = (
            ("<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>") if tokenizer == "spm-phi3" else ()
        )
        vocab = _spm(
            out, tokenizer != "spm-gemma", "GemmaTokenizer" if tokenizer == "spm-gemma" else "LlamaTokenizer", specials
        )
    kwargs = {} if architecture in ("GPT2LMHeadModel", "MambaForCausalLM") else dict(SMALL)
    kwargs.update(extra)
    kwargs.update(overrides)
    config = config_cls(vocab_size=vocab, bos_token_id=1, eos_token_id=2, **kwargs)
    config.architectures = [architecture]
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.save_pretrained(str(out), safe_serialization=True)
    if architecture == "GPTNeoXForCausalLM":
        # Pythia's config.json names the rotary share; transformers 5 saves it inside rope_parameters.
        saved = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**saved, "rotary_pct": 0.25, "rotary_emb_base": 10000}))
    return out
