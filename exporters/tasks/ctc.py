"""CTC speech recognition (Wav2Vec2, HuBERT, WavLM ...ForCTC): per audio frame, logits over the
character vocabulary; greedy decoding collapses repeats and drops the blank (the pad token). The
sidecar records the blank and the word delimiter ("|") ids, which compare's WER needs."""

from pathlib import Path
from typing import Any, TypeGuard

from edgeinfer.exporters.tasks import ExportTask, InputOptions, TaskInputs, register_task
from edgeinfer.exporters.tasks._inputs import audio_inputs, with_output_axes

WORD_DELIMITER = "|"
MAX_VOCAB_BYTES = 16 * 2**20  # a character vocabulary is a few KB; a word-piece one a few MB


def head_ids(config: dict, path: Path) -> dict[str, int]:
    """The blank id (the pad token) and, where the folder's vocab.json names it, the word delimiter's
    id. The vocabulary is the user's file: a size budget, then an object, then an id in range."""
    from edgeinfer.core.formats import read_json_object

    vocab_size = config.get("vocab_size")
    blank = config.get("pad_token_id")
    head = {"blank": blank if _is_id(blank, vocab_size) else 0}
    vocab_file = path / "vocab.json"
    if vocab_file.is_file():  # the CTC tokenizer's labels: {"<pad>": 0, "|": 4, "E": 5, ...}
        vocab = read_json_object(vocab_file, "CTC vocabulary", max_bytes=MAX_VOCAB_BYTES)
        delimiter = vocab.get(WORD_DELIMITER)
        if _is_id(delimiter, vocab_size):
            head["word_delimiter"] = delimiter
    return head


def _is_id(value: Any, vocab_size: Any) -> TypeGuard[int]:
    """A token id: an integer, not a boolean, inside the vocabulary config.json gives the size of."""
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (value, vocab_size))
    return ints and 0 <= value < vocab_size


def _inputs(model: Any, config: dict, path: Path, batch: tuple[int, int], options: InputOptions) -> TaskInputs:
    inputs = with_output_axes(audio_inputs, {"logits": {0: "batch", 1: "frames"}})(model, config, path, batch, options)
    inputs.head = head_ids(config, path)
    return inputs


register_task(
    ExportTask(
        name="ctc",
        auto_class="AutoModelForCTC",
        architectures=("ForCTC",),
        outputs=("logits",),
        inputs=_inputs,
    )
)
