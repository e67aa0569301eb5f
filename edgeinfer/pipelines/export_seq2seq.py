"""`edgeinfer export` for encoder-decoders (T5, BART, Marian; Whisper): a folder with encoder.onnx and
decoder.onnx (each validated against PyTorch on two input sets, the decoder's second one from an
empty KV cache), generation.json, the tokenizer (and a speech model's feature extractor settings),
then an end-to-end check: greedy generation on ONNX Runtime must give the tokens transformers' own
greedy `generate` gives, on sentences or on synthetic voiced clips."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeinfer.core.artifact import Artifact, load_artifact
from edgeinfer.core.errors import ConfigError, OutputExistsError, ValidationError, option
from edgeinfer.core.progress import QUIET, Progress

CHECK_SENTENCES = ("The quick brown fox jumps over the lazy dog.", "Edge devices run small models.", "Hi")
CHECK_CLIPS = 3
CHECK_TOKENS = 16


@dataclass
class Seq2SeqExport:
    """What `export` wrote for an encoder-decoder: the folder, its two graphs and the generation check."""

    folder: Path
    encoder: Artifact
    decoder: Artifact
    generation: dict[str, Any]
    check: dict[str, Any] = field(default_factory=dict)
    task: str = "seq2seq-lm"

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.folder),
            "task": self.task,
            "encoder": {"sha256": self.encoder.sha256, "validation": self.encoder.validation},
            "decoder": {"sha256": self.decoder.sha256, "validation": self.decoder.validation},
            "generation": self.generation,
            "generation_check": self.check,
        }


def is_seq2seq_source(source: str, task: str | None) -> bool:
    """A Hugging Face folder whose task (given, or read off its architecture) writes an encoder and
    a decoder (seq2seq-lm, speech-seq2seq)."""
    from edgeinfer.core.hf_folder import read_config
    from edgeinfer.exporters.tasks import get_task, infer_task

    path = Path(source)
    if task is not None:
        return bool(get_task(task).parts)
    if not (path.is_dir() and (path / "config.json").is_file()):
        return False
    arch = (read_config(path).get("architectures") or [""])[0]
    return bool(infer_task(arch).parts)


def export_encoder_decoder(
    source: str,
    output: Path,
    *,
    opset: int | None = None,
    exporter: str = "auto",
    atol: float | None = None,
    allow_new_head: bool = False,
    task: str | None = None,
    force: bool = False,
    progress: Progress = QUIET,
) -> Seq2SeqExport:
    """export_seq2seq from flat options, as the CLI has them."""
    from edgeinfer.exporters.onnx import DEFAULT_OPSET, OnnxExportConfig

    config = OnnxExportConfig(opset or DEFAULT_OPSET, exporter, False, atol, task, allow_new_head)  # type: ignore[arg-type]
    return export_seq2seq(source, output, config, force=force, progress=progress)


def export_seq2seq(
    source: str, output: Path, config, *, force: bool = False, progress: Progress = QUIET
) -> Seq2SeqExport:
    """Export the folder `source` into the folder `output` (refused when it exists, unless force)."""
    from edgeinfer.core.hf_folder import FEATURE_EXTRACTOR_FILE
    from edgeinfer.exporters.onnx import Exporter
    from edgeinfer.exporters.seq2seq import DECODER, ENCODER, GENERATION, load_seq2seq
    from edgeinfer.pipelines.deploy.bundle import TOKENIZER_FILES, bundle_dir
    from edgeinfer.pipelines.export import export_source

    output = Path(output)
    if output.suffix:
        raise ConfigError(
            f"an encoder-decoder exports into a folder (encoder.onnx, decoder.onnx, generation.json, the tokenizer): "
            f"name the output without a suffix, not {output.name}"
        )
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        if not force:
            raise OutputExistsError(f"output {output} exists; pass {option('force', True)} to replace it")
        if not (output / GENERATION).is_file():
            raise OutputExistsError(f"{output} holds files but is no exported encoder-decoder; refusing to replace it")
    if config.exporter is Exporter.AUTO:
        # The decoder builds its KV cache from plain tensors inside forward and must run from an
        # empty cache: TorchScript keeps the cache length symbolic; torch.export specialises a 0.
        config = replace(config, exporter=Exporter.TORCHSCRIPT)
    progress.stage(f"loading {source} (encoder-decoder)")
    parts = load_seq2seq(Path(source), config.allow_new_head, config.task)
    with bundle_dir(output) as tmp:
        progress.stage("exporting the encoder")
        export_source(parts.encoder, tmp / ENCODER, config, progress=progress)
        progress.stage("exporting the decoder (with its KV cache)")
        export_source(parts.decoder, tmp / DECODER, config, progress=progress)
        for name in (*TOKENIZER_FILES, "added_tokens.json", FEATURE_EXTRACTOR_FILE):
            if (Path(source) / name).is_file():
                shutil.copyfile(Path(source) / name, tmp / name)
        generation = {"files": {"encoder": ENCODER, "decoder": DECODER}, **parts.generation}
        (tmp / GENERATION).write_text(json.dumps(generation, indent=2) + "\n")
        progress.stage("checking greedy generation on ONNX Runtime against transformers")
        check = _generation_check(tmp, parts)
        if not check["identical"]:
            raise ValidationError(
                "greedy generation on ONNX Runtime differs from transformers' (nothing was written)",
                [
                    f"{c['text']!r}: {c['onnx'][:12]} vs {c['transformers'][:12]}"
                    for c in check["cases"]
                    if c["onnx"] != c["transformers"]
                ],
            )
    return Seq2SeqExport(
        output, load_artifact(output / ENCODER), load_artifact(output / DECODER), generation, check, parts.task
    )


def _transformers_tokens(parts, feeds: dict[str, Any]) -> list[int]:
    """transformers' greedy `generate` on the same inputs, without the decoder prompt it starts from."""
    import torch

    settings = {"max_new_tokens": CHECK_TOKENS, "do_sample": False, "num_beams": 1}
    with torch.no_grad():
        if parts.task == "speech-seq2seq":
            g = parts.generation
            out = parts.model.generate(
                torch.from_numpy(feeds["input_features"]), language=g["language"], task=g["task"], **settings
            )[0].tolist()
            prompt = g["decoder_prompt_ids"]
            return out[len(prompt) :] if out[: len(prompt)] == prompt else out
        out = parts.model.generate(
            input_ids=torch.from_numpy(feeds["input_ids"]),
            attention_mask=torch.from_numpy(feeds["attention_mask"]),
            **settings,
        )[0].tolist()
        return out[1:]  # without the decoder start token


def _generation_check(folder: Path, parts) -> dict[str, Any]:
    from edgeinfer.core.audio import synthetic_clips
    from edgeinfer.core.model_kind import ModelKind
    from edgeinfer.runtime import load

    runner: Any = load(folder, expect=ModelKind.SEQ2SEQ)
    if parts.task == "speech-seq2seq":
        sources = [(f"synthetic clip {i}", runner.encode_audio(c)) for i, c in enumerate(synthetic_clips(CHECK_CLIPS))]
    else:
        sources = [(text, runner.encode(text)) for text in CHECK_SENTENCES]
    cases = []
    for text, feeds in sources:
        ours = runner.generate(inputs=feeds, max_new_tokens=CHECK_TOKENS).tokens
        theirs = _transformers_tokens(parts, feeds)
        pad = parts.generation.get("pad_token_id")
        while theirs and theirs[-1] == pad and len(theirs) > len(ours):
            theirs.pop()  # transformers pads a sequence that stopped early
        cases.append({"text": text, "onnx": ours, "transformers": theirs})
    mismatch = next((i for i, c in enumerate(cases) if c["onnx"] != c["transformers"]), None)
    return {
        "identical": mismatch is None,
        "first_mismatch": mismatch,
        "tokens": sum(len(c["onnx"]) for c in cases),
        "max_new_tokens": CHECK_TOKENS,
        "cases": cases,
    }
