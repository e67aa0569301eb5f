"""Hugging Face causal LM -> an ONNX Runtime GenAI folder (model.onnx with a KV cache and
MatMulNBits INT4 / INT8 weights, genai_config.json, the tokenizer), written by onnxruntime-genai's
own model builder, the tool made for this; the export pipeline then checks it against transformers.

The builder runs as a subprocess: it is a command-line tool with module-level state, and a
failure there (an architecture it does not know) becomes one error line here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from edgeinfer.core.child import isolated_python
from edgeinfer.core.errors import ConfigError, InputError, MissingDependencyError, UnsupportedError

PRECISIONS = ("int4", "int8", "fp16", "fp32")
BLOCK_SIZES = (16, 32, 64, 128, 256)


def _check_rope_layout(source: Path) -> None:
    """The builder reads `rope_parameters["rope_type"]`; transformers 5 gives models with a RoPE per
    attention type (Gemma 3: full and sliding) one table per type instead, where the builder stops
    with a bare KeyError. Refused here, naming the model and the way that works."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(str(source), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError):
        return  # the builder reports what it makes of the folder
    text = getattr(config, "get_text_config", lambda: config)()
    rope = getattr(text, "rope_parameters", None)
    if isinstance(rope, dict) and "rope_type" not in rope and any(isinstance(v, dict) for v in rope.values()):
        from importlib.metadata import version

        raise UnsupportedError(
            f"{source.name} ({config.model_type}) has a RoPE per attention type ({', '.join(rope)}), which "
            f"onnxruntime-genai {version('onnxruntime-genai')}'s model builder cannot read from transformers "
            f"{transformers.__version__}'s config; export it to GGUF instead (edgeinfer export {source} -o model.gguf)"
        )


def build_genai(source: Path, output: Path, precision: str = "int4", block_size: int = 32) -> None:
    """Run the model builder from the folder `source` into `output` (which must be empty), offline."""
    import importlib.util

    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose {', '.join(PRECISIONS)}")
    if block_size not in BLOCK_SIZES:
        raise ConfigError(f"block size {block_size}: choose {', '.join(map(str, BLOCK_SIZES))}")
    if importlib.util.find_spec("onnxruntime_genai") is None:
        raise MissingDependencyError("onnxruntime-genai", "exporting an LLM to ONNX (pip install 'edgeinfer[genai]')")
    _check_rope_layout(source)
    cache = output.parent / f".{output.name}.builder-cache"
    cmd = [
        *isolated_python("-m", "onnxruntime_genai.models.builder"), "-i", str(source), "-o", str(output),
        "-p", precision, "-e", "cpu", "-c", str(cache),
        "--extra_options", f"block_size={block_size}", "hf_token=false",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    finally:
        import shutil

        shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0 or not (output / "genai_config.json").is_file():
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        said = next(
            (line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1] if lines else ""
        )
        raise InputError(f"onnxruntime-genai's model builder could not convert {source.name}: {said.strip()[:300]}")
