"""A multiple-choice head (SWAG-style): one score per candidate ending, from inputs shaped
[batch, choices, sequence] (each choice is the context paired with one ending)."""

from pathlib import Path
from typing import Any

from edgeinfer.exporters.tasks import ExportTask, InputOptions, TaskInputs, register_task
from edgeinfer.exporters.tasks._inputs import SENTENCES, text_inputs


def _inputs(model: Any, config: dict, path: Path, batch: tuple[int, int], options: InputOptions) -> TaskInputs:
    from edgeinfer.core.hf_folder import load_tokenizer

    plain = text_inputs(model, config, path, batch, options)  # which inputs the model takes, ids checked
    tokenizer = load_tokenizer(path)

    def encode(n: int, choices: int, offset: int):
        contexts = [SENTENCES[(offset + i) % len(SENTENCES)] for i in range(n) for _ in range(choices)]
        endings = [SENTENCES[(offset + i + c + 1) % len(SENTENCES)] for i in range(n) for c in range(choices)]
        enc = tokenizer(contexts, endings, padding=True, return_tensors="pt")
        return {k: enc[k].reshape(n, choices, -1) for k in plain.names}

    axes = {n: {0: "batch", 1: "choices", 2: "sequence"} for n in plain.names}
    return TaskInputs(
        plain.names,
        encode(batch[0], 2, 0),
        encode(batch[1], 3, batch[0]),
        axes,
        tokenizer_dir=plain.tokenizer_dir,
        output_axes={"logits": {0: "batch", 1: "choices"}},
    )


register_task(
    ExportTask(
        name="multiple-choice",
        auto_class="AutoModelForMultipleChoice",
        architectures=("ForMultipleChoice",),
        outputs=("logits",),
        inputs=_inputs,
    )
)
