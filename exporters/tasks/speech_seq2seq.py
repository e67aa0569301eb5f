"""Speech recognition encoder-decoders (Whisper): log-mel features into an encoder, a decoder with
a KV cache, written into a folder with the generation settings, the tokenizer and the feature
extractor's settings (exporters/seq2seq.py)."""

from pathlib import Path
from typing import Any

from edgeinfer.core.errors import ConfigError
from edgeinfer.exporters.tasks import ExportTask, InputOptions, TaskInputs, register_task


def _one_graph(model: Any, config: dict, path: Path, batch: tuple[int, int], options: InputOptions) -> TaskInputs:
    raise ConfigError("speech-seq2seq exports two graphs (encoder and decoder) into a folder: name the output a folder")


register_task(
    ExportTask(
        name="speech-seq2seq",
        auto_class="AutoModelForSpeechSeq2Seq",
        architectures=("WhisperForConditionalGeneration",),
        outputs=("logits",),
        inputs=_one_graph,
        parts=("encoder.onnx", "decoder.onnx"),
    )
)
