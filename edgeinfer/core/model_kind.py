"""What kind of model a path holds, recognised in this one place: every command and pipeline asks
here (and `edgeinfer.runtime.load` picks the backend from it); none looks at a suffix itself."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

# The files that mark the two kinds of model folder.
GENAI_CONFIG = "genai_config.json"  # an ONNX Runtime GenAI LLM folder
GENERATION = "generation.json"  # an encoder-decoder exported by edgeinfer (encoder, decoder, tokenizer)


class ModelKind(StrEnum):
    ONNX = "onnx"
    GGUF = "gguf"
    GENAI = "genai"
    SEQ2SEQ = "seq2seq"

    @property
    def one(self) -> str:
        """How an error names one model of this kind: 'a GGUF LLM'."""
        return _NAMES[self][0]

    @property
    def many(self) -> str:
        """How an error names models of this kind: 'GGUF LLMs'."""
        return _NAMES[self][1]


_NAMES = {
    ModelKind.ONNX: ("an ONNX model", "ONNX models"),
    ModelKind.GGUF: ("a GGUF LLM", "GGUF LLMs"),
    ModelKind.GENAI: ("a GenAI folder", "GenAI folders"),
    ModelKind.SEQ2SEQ: ("an encoder-decoder folder", "encoder-decoder folders"),
}


def model_kind(path: Path | str) -> ModelKind:
    """A .gguf file is a GGUF LLM; a folder with genai_config.json an ONNX Runtime GenAI LLM, one
    with generation.json an exported encoder-decoder; anything else is taken as ONNX (whose loader
    then says what is wrong with it: missing, a folder, not ONNX)."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        return ModelKind.GGUF
    if path.is_dir():
        if (path / GENAI_CONFIG).is_file():
            return ModelKind.GENAI
        if (path / GENERATION).is_file():
            return ModelKind.SEQ2SEQ
    return ModelKind.ONNX
