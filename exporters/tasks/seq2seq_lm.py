"""Encoder-decoder language models (T5, BART, Marian): an encoder and a decoder with a KV cache,
written into a folder with the generation settings and the tokenizer (exporters/seq2seq.py)."""

from pathlib import Path
from typing import Any

from edgeinfer.core.errors import ConfigError
from edgeinfer.exporters.tasks import ExportTask, InputOptions, TaskInputs, register_task


def _one_graph(model: Any, config: dict, path: Path, batch: tuple[int, int], options: InputOptions) -> TaskInputs:
    raise ConfigError("seq2seq-lm exports two graphs (encoder and decoder) into a folder: name the output a folder")


register_task(
    ExportTask(
        name="seq2seq-lm",
        auto_class="AutoModelForSeq2SeqLM",
        architectures=("ForConditionalGeneration", "MTModel"),
        outputs=("logits",),
        inputs=_one_graph,
        parts=("encoder.onnx", "decoder.onnx"),
    )
)
