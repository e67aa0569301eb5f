"""`edgeinfer export HF_LLM_DIR -o OUT_DIR`: a causal LM as an ONNX Runtime GenAI folder (INT4 by
default), kept only after its log-probs on real text agree with transformers' within the
precision's tolerance (mean KL divergence and top-1 agreement, as the GGUF export's self-check)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import ConfigError, OutputExistsError, ValidationError, option
from edgeinfer.core.progress import QUIET, Progress

# (max mean KL, min top-1 agreement) against transformers in float32, by weight precision. INT4
# is lossy by design: the builder's round-to-nearest INT4 of SmolLM2-135M measures KL 1.68 / top-1
# 0.49 on the check text (llama.cpp's Q4_K_M: 0.38 / 0.77), so its bound catches a broken
# conversion (several nats), not rounding; FP32 must be exact (measured 6e-6 / 1.0).
TOLERANCE = {"fp32": (1e-3, 0.98), "fp16": (1e-2, 0.95), "int8": (0.15, 0.85), "int4": (2.5, 0.4)}
RECORD = "edgeinfer.json"


@dataclass
class GenAiExport:
    folder: Path
    precision: str
    block_size: int
    validation: dict[str, Any]
    quantization: dict[str, Any] | None = None  # edgeinfer's INT4 recipe: method, bits, per-weight errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.folder),
            "format": "onnx-genai",
            "precision": self.precision,
            "block_size": self.block_size,
            "validation": self.validation,
            **({"quantization": self.quantization} if self.quantization else {}),
        }


def is_causal_lm_source(source: str) -> bool:
    """A Hugging Face folder whose architecture is a causal LM (…ForCausalLM, GPT2LMHeadModel)."""
    from edgeinfer.core.hf_folder import read_config

    path = Path(source)
    if not (path.is_dir() and (path / "config.json").is_file()):
        return False
    arch = (read_config(path).get("architectures") or [""])[0]
    return arch.endswith(("ForCausalLM", "LMHeadModel"))


def check_genai_output(output: Path, force: bool) -> None:
    """An existing non-empty output is replaced only with --force, and only when it is a GenAI folder."""
    from edgeinfer.runtime.genai import CONFIG

    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        if not force:
            raise OutputExistsError(f"output {output} exists; pass {option('force', True)} to replace it")
        if not (output / CONFIG).is_file():
            raise OutputExistsError(f"{output} holds files but is no GenAI model folder; refusing to replace it")


def export_genai(
    source: str,
    output: Path,
    *,
    precision: str = "int4",
    block_size: int = 32,
    check_tokens: int = 256,
    calib: Path | None = None,
    recipe: str = "edgeinfer",
    force: bool = False,
    progress: Progress = QUIET,
) -> GenAiExport:
    """Build the folder, score it against transformers, and move it into place only if it agrees.

    INT4 is edgeinfer's recipe by default (pipelines.genai_int4: the builder's float graph, 8 bits
    where llama.cpp's Q4_K_M keeps more, asymmetric 4-bit elsewhere; GPTQ on `calib`'s text when
    given); `recipe="builder"` keeps the model builder's own round-to-nearest INT4."""
    from edgeinfer.core.hf_folder import read_config
    from edgeinfer.core.model_kind import ModelKind
    from edgeinfer.examples import PUBLIC_DOMAIN_TEXT
    from edgeinfer.exporters.genai import build_genai
    from edgeinfer.exporters.gguf.reference import load_tokenizer, log_probs
    from edgeinfer.pipelines.deploy.bundle import bundle_dir
    from edgeinfer.pipelines.export_gguf import logits_parity
    from edgeinfer.pipelines.genai_int4 import RECIPES
    from edgeinfer.runtime import load

    src, output = Path(source), Path(output)
    read_config(src)
    check_genai_output(output, force)
    if check_tokens < 16:
        raise ConfigError(f"{option('check_tokens', check_tokens)} must be at least 16")
    if recipe not in RECIPES:
        raise ConfigError(f"{option('int4_recipe', recipe)}: choose {' or '.join(RECIPES)}")
    ours = precision == "int4" and recipe == "edgeinfer"
    if calib is not None and not ours:
        raise ConfigError(f"{option('calib')} calibrates edgeinfer's INT4 recipe: use it with --precision int4")
    text = None
    if calib is not None:
        from edgeinfer.core.formats import read_text_file

        text = read_text_file(Path(calib), "calibration text")
    quantization = None
    with bundle_dir(output) as tmp:
        if ours:
            from edgeinfer.core.io import scratch_dir
            from edgeinfer.pipelines.genai_int4 import quantize_folder, token_chunks

            chunks = token_chunks(src, text) if text is not None else None
            with scratch_dir("genai") as scratch:
                progress.stage("building the ONNX Runtime GenAI model's float graph")
                build_genai(src, scratch / "fp32", "fp32", block_size)
                quantization = quantize_folder(
                    scratch / "fp32", tmp, block_size=block_size, chunks=chunks, progress=progress
                )
            if calib is not None:
                quantization["calibration_text"] = Path(calib).name
        else:
            progress.stage(f"building the ONNX Runtime GenAI model ({precision}, block {block_size})")
            build_genai(src, tmp, precision, block_size)
        progress.stage(f"checking log-probs on {check_tokens} tokens against transformers")
        tokens = load_tokenizer(src)(PUBLIC_DOMAIN_TEXT.read_text(encoding="utf-8"))["input_ids"][:check_tokens]
        ref = log_probs(src, tokens)
        runner: Any = load(tmp, expect=ModelKind.GENAI)
        parity = logits_parity(ref, runner.sequence_log_probs(tokens))
        max_kl, min_top1 = TOLERANCE[precision]
        parity["tolerance"] = {"kl_mean": max_kl, "top1_agreement": min_top1}
        problems = []
        if not parity["kl_mean"] <= max_kl:
            problems.append(f"mean KL divergence {parity['kl_mean']:.4g} > {max_kl} ({precision})")
        if not parity["top1_agreement"] >= min_top1:
            problems.append(f"top-1 agreement {parity['top1_agreement']:.3f} < {min_top1} ({precision})")
        if problems:
            raise ValidationError(
                "the ONNX model's log-probs disagree with transformers (nothing was written)", problems
            )
        validation = {"logits_parity": parity, "check_tokens": len(tokens)}
        record = {
            "source": str(src.resolve()),
            "precision": precision,
            "block_size": block_size,
            "validation": validation,
            "recipe": recipe if precision == "int4" else "builder",
            **({"quantization": quantization} if quantization else {}),
        }
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return GenAiExport(output, precision, block_size, validation, quantization)


def quantize_genai(
    folder: Path,
    output: Path,
    *,
    calib: Path | None = None,
    block_size: int = 32,
    check_tokens: int = 256,
    force: bool = False,
    progress: Progress = QUIET,
):
    """`quantize FP32_FOLDER -o OUT --method int4 [--calib TEXT]`: edgeinfer's INT4 recipe applied to
    a float GenAI folder, kept only when its log-probs stay within INT4's tolerance of the folder's own.

    Returns a pipelines.export_genai.GenAiExport for the new folder.
    """
    from edgeinfer.core.formats import read_text_file
    from edgeinfer.core.hf_folder import load_tokenizer
    from edgeinfer.core.model_kind import ModelKind
    from edgeinfer.examples import PUBLIC_DOMAIN_TEXT
    from edgeinfer.pipelines.deploy.bundle import bundle_dir
    from edgeinfer.pipelines.export_gguf import logits_parity
    from edgeinfer.pipelines.genai_int4 import MAX_CHUNKS, quantize_folder
    from edgeinfer.runtime import load

    folder, output = Path(folder), Path(output)
    if output.resolve() == folder.resolve():
        raise OutputExistsError(f"the output {output} is the input folder; name another folder")
    check_genai_output(output, force)
    reference: Any = load(folder, expect=ModelKind.GENAI)  # checks the folder (config, paths, tokenizer) first
    tokenizer = load_tokenizer(folder, pad_with_eos=False)
    text = read_text_file(Path(calib), "calibration text") if calib is not None else None
    from edgeinfer.pipelines.imatrix import CHUNK_SIZE, calibration_chunks

    chunks = calibration_chunks(tokenizer, text, CHUNK_SIZE, MAX_CHUNKS) if text is not None else None
    tokens = tokenizer(PUBLIC_DOMAIN_TEXT.read_text(encoding="utf-8"))["input_ids"][:check_tokens]
    ref = reference.sequence_log_probs(tokens)
    reference.close()
    with bundle_dir(output) as tmp:
        quantization = quantize_folder(folder, tmp, block_size=block_size, chunks=chunks, progress=progress)
        if calib is not None:
            quantization["calibration_text"] = Path(calib).name
        progress.stage(f"checking log-probs on {len(tokens)} tokens against {folder.name}")
        runner: Any = load(tmp, expect=ModelKind.GENAI)
        parity = logits_parity(ref, runner.sequence_log_probs(tokens))
        runner.close()
        max_kl, min_top1 = TOLERANCE["int4"]
        parity["tolerance"] = {"kl_mean": max_kl, "top1_agreement": min_top1}
        if not (parity["kl_mean"] <= max_kl and parity["top1_agreement"] >= min_top1):
            raise ValidationError(
                f"the INT4 folder's log-probs disagree with {folder.name}'s (nothing was written)",
                [f"mean KL {parity['kl_mean']:.4g} (at most {max_kl}), top-1 {parity['top1_agreement']:.3f} "
                 f"(at least {min_top1})"],
            )  # fmt: skip
        validation = {"logits_parity": parity, "check_tokens": len(tokens), "against": str(folder.resolve())}
        record = {"source": str(folder.resolve()), "precision": "int4", "block_size": block_size,
                  "validation": validation, "recipe": "edgeinfer", "quantization": quantization}  # fmt: skip
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return GenAiExport(output, "int4", block_size, validation, quantization)
