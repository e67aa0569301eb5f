"""Tokenizer metadata for GGUF: vocabulary, token types, scores, merges, special tokens, chat template.

SentencePiece models come from tokenizer.model, byte-level BPE from tokenizer.json; the
pre-tokenizer is named from tokenizer.json's own split rule, and the export's round-trip
check proves llama.cpp then tokenizes exactly as Hugging Face does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import InputError, MissingDependencyError

# The split rules of llama.cpp's built-in byte-level BPE pre-tokenizers, told apart by the digit
# rule: Llama 3 groups up to three digits, Qwen2 splits every digit.
_LLAMA3_WORDS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
_SPLIT_RULES = {
    _LLAMA3_WORDS + r"\p{N}{1,3}": "llama-bpe",
    _LLAMA3_WORDS + r"\p{N}": "qwen2",
}


def bpe_pre_tokenizer(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer this tokenizer.json describes ("default" if none fits)."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"]:
        return "gpt-2" if steps[0].get("use_regex", True) else "default"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    if kinds and kinds[0] == "Split":
        regex = (steps[0].get("pattern") or {}).get("Regex", "")
        for prefix, name in _SPLIT_RULES.items():
            if regex.startswith(prefix) and not regex.startswith(prefix + "{"):
                return name
    return "default"


def write_vocab(w, path: Path, n_vocab: int) -> dict[str, Any]:
    """Write the tokenizer of the model in `path`; returns what was written, for the sidecar."""
    import gguf

    if (path / "tokenizer.model").is_file():
        try:
            vocab = gguf.SentencePieceVocab(path)
        except RuntimeError as e:  # gguf-py raises this when sentencepiece is missing
            raise MissingDependencyError("sentencepiece", "converting a SentencePiece tokenizer") from e
        model, pre = "llama", "default"
    elif (path / "tokenizer.json").is_file():
        tokenizer_json = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        if tokenizer_json["model"].get("byte_fallback"):
            vocab, model, pre = gguf.LlamaHfVocab(path), "llama", "default"
        else:
            vocab, model, pre = _ByteLevelBpe(path), "gpt2", bpe_pre_tokenizer(tokenizer_json)
    else:
        raise InputError(
            f"{path} has no tokenizer (tokenizer.json or tokenizer.model); GGUF files carry "
            "their tokenizer, so the export needs it"
        )
    tokens, scores, types = [], [], []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(kind)
    if len(tokens) > n_vocab:
        raise InputError(f"the tokenizer has {len(tokens)} tokens but the model's embedding only {n_vocab}")
    # Embedding rows past the tokenizer (padding to a multiple of 64, say) get placeholder tokens.
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    w.add_tokenizer_model(model)
    w.add_tokenizer_pre(pre)
    space_prefix = None
    if model == "llama":
        # Whether "a" becomes "▁a" differs by model (Llama yes, Gemma no) and by transformers'
        # own handling of tokenizer.model; llama.cpp must do what the Hugging Face tokenizer does.
        space_prefix = _hf_adds_space_prefix(path)
        w.add_add_space_prefix(space_prefix)
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    special = gguf.SpecialVocab(path, load_merges=model == "gpt2", n_vocab=n_vocab)
    special.add_to_gguf(w, quiet=True)
    return {
        "model": model,
        "pre": pre,
        "tokens": len(tokens),
        "merges": len(special.merges),
        **({"space_prefix": space_prefix} if space_prefix is not None else {}),
        "special": dict(special.special_token_ids),
        "chat_template": special.chat_template is not None,
    }


def _hf_adds_space_prefix(path: Path) -> bool:
    from edgeinfer.exporters.gguf.reference import load_tokenizer

    tok = load_tokenizer(path)
    ids = tok("a", add_special_tokens=False)["input_ids"]
    return bool(ids) and tok.convert_ids_to_tokens(ids[0]).startswith("\u2581")


class _ByteLevelBpe:
    """GPT-2-style BPE whose special tokens are typed CONTROL wherever they sit in the vocabulary.

    gguf-py's BpeVocab types only tokens appended after the vocabulary as special; SmolLM2 and
    Qwen2 keep theirs inside it, and llama.cpp would then split `<|im_start|>` into pieces.
    """

    def __init__(self, path: Path) -> None:
        from edgeinfer.exporters.gguf.reference import load_tokenizer

        tok = load_tokenizer(path)
        self.vocab = tok.get_vocab()
        self.added = {i: t for i, t in tok.added_tokens_decoder.items()}

    def all_tokens(self):
        import gguf

        by_id = {i: t for t, i in self.vocab.items()}
        for i in range(max(by_id) + 1):
            if i in self.added:
                added = self.added[i]
                kind = gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED
                yield added.content.encode("utf-8"), 0.0, kind
            elif i in by_id:
                yield by_id[i].encode("utf-8"), 0.0, gguf.TokenType.NORMAL
            else:
                yield f"[PAD{i}]".encode(), 0.0, gguf.TokenType.UNUSED
