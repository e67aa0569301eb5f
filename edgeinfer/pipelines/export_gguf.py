"""`edgeinfer export HF_DIR -o model.gguf`: convert, then prove the GGUF matches the source model.

Two checks run on the unfinished file before it is moved into place: llama.cpp must tokenize a
sample exactly as the Hugging Face tokenizer does, and its log-probs on real text must agree
with transformers' within the tolerance of the output type. A failure writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeinfer.core.artifact import Artifact, Step, new_artifact
from edgeinfer.core.errors import ValidationError
from edgeinfer.core.io import atomic_path, check_output
from edgeinfer.core.progress import QUIET, Progress

if TYPE_CHECKING:
    from edgeinfer.exporters.gguf import GgufExportConfig

# Hard cases for a tokenizer port: contractions, digit runs, accents, emoji, runs of blanks,
# newlines and tabs, code, and a control token written in the text.
ROUNDTRIP_SAMPLE = (
    "It's 2026; they'll pay $1,234.56 for 12345678 items, isn't it?\n\n"
    "Naïve café owners in São Paulo said: «¡Hola!» 你好，世界。 🙂🚀\n"
    "    def f(x):\n\treturn x**2  # spaces   and\ttabs\r\n"
    "<|im_start|>user\nHello<|im_end|> END"
)

# (max mean KL divergence, min top-1 agreement) against transformers in float32, per output type.
TOLERANCE = {"f32": (1e-3, 0.98), "f16": (2e-3, 0.98), "bf16": (1e-2, 0.95), "q8_0": (2e-2, 0.93)}


def _first_difference(a: list[int], b: list[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def tokenizer_roundtrip(tokenizer, runner, text: str) -> dict[str, Any]:
    hf = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    cpp = runner.tokenize(text, add_bos=False, special=True)
    figures = {"characters": len(text), "hf_tokens": len(hf), "gguf_tokens": len(cpp), "equal": hf == cpp}
    if hf != cpp:
        i = _first_difference(hf, cpp)
        figures["first_difference"] = {"position": i, "hf": hf[i : i + 5], "gguf": cpp[i : i + 5]}
    return figures


def logits_parity(ref: np.ndarray, cand: np.ndarray) -> dict[str, Any]:
    from edgeinfer.pipelines.llm_eval import agreement

    return {"tokens": int(len(ref)), **agreement(ref, cand), "max_abs_logprob_diff": float(np.abs(ref - cand).max())}


def export_gguf(
    source: str,
    output: Path,
    cfg: GgufExportConfig,
    *,
    force: bool = False,
    progress: Progress = QUIET,
) -> Artifact:
    """Convert a Hugging Face causal LM folder to GGUF, then self-check it in llama.cpp (tokenizer
    round-trip, log-prob parity with transformers on cfg.check_tokens tokens) before it appears."""
    from edgeinfer.examples import PUBLIC_DOMAIN_TEXT
    from edgeinfer.exporters.gguf import convert, reference
    from edgeinfer.pipelines.target import gguf_runner
    from edgeinfer.runtime.llama import LlamaSettings

    src = Path(source)
    output = Path(output)
    adapter, check_tokens = cfg.adapter, cfg.check_tokens
    check_output(output, [src], force)
    max_kl, min_top1 = TOLERANCE[cfg.outtype.value.lower()]
    with atomic_path(output, overwrite=force) as tmp:
        progress.stage(f"converting {src.name} to GGUF {cfg.outtype.value}")
        figures = convert(src, tmp, cfg, progress)
        progress.stage("self-check: loading the GGUF in llama.cpp")
        runner = gguf_runner(tmp, LlamaSettings(n_ctx=max(check_tokens, 512)), logits_all=True)
        progress.stage("self-check: tokenizer round-trip")
        text = PUBLIC_DOMAIN_TEXT.read_text(encoding="utf-8")
        tokenizer = reference.load_tokenizer(src)
        roundtrip = tokenizer_roundtrip(tokenizer, runner, ROUNDTRIP_SAMPLE + "\n" + text[:4000])
        tokens = list(tokenizer(text, add_special_tokens=False)["input_ids"])[:check_tokens]
        progress.stage(f"self-check: log-probs on {len(tokens)} tokens, transformers vs llama.cpp")
        parity = logits_parity(reference.log_probs(src, tokens, adapter), runner.sequence_log_probs(tokens))
        parity["tolerance"] = {"kl_mean": max_kl, "top1_agreement": min_top1}
        del runner
        problems = []
        if not roundtrip["equal"]:
            d = roundtrip["first_difference"]
            problems.append(
                f"llama.cpp tokenizes the sample differently from Hugging Face from token {d['position']} "
                f"(hf {d['hf']} vs gguf {d['gguf']}; pre-tokenizer '{figures['tokenizer']['pre']}')"
            )
        parity_failed = parity["kl_mean"] > max_kl or parity["top1_agreement"] < min_top1
        if parity["kl_mean"] > max_kl:
            problems.append(f"mean KL divergence {parity['kl_mean']:.3g} > {max_kl:g} allowed for {cfg.outtype.value}")
        if parity["top1_agreement"] < min_top1:
            problems.append(
                f"top-1 agreement {parity['top1_agreement']:.3f} < {min_top1:g} allowed for {cfg.outtype.value}"
            )
        if parity_failed:  # say where the outputs part
            from edgeinfer.exporters.gguf.diagnose import diagnosis

            progress.stage("self-check failed: comparing the GGUF's tensors with the checkpoint's")
            problems.append(diagnosis(tmp, src))
        if problems:
            raise ValidationError(f"the GGUF does not match {src.name}; nothing written", problems)
    config: dict[str, Any] = {"outtype": cfg.outtype.value.lower()}
    if adapter:
        config["adapter"] = figures.pop("adapter")
    validation = {"tokenizer_roundtrip": roundtrip, "logits_parity": parity, "conversion_seconds": figures["seconds"]}
    meta = {
        k: figures[k]
        for k in ("architecture", "gguf_architecture", "converter", "tensors", "tensor_types", "tokenizer")
    }
    description = {"kind": "huggingface", "path": str(src.resolve()), "architecture": figures["architecture"]}
    art = new_artifact(output, description, Step("export", config, validation), meta)
    art.save()
    return art
