"""Export tasks: the registry, the task read off config.json's architecture name, unknown tasks.
The tiny model of every task exporting from its folder is in test_architectures.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeinfer.core.errors import ConfigError
from edgeinfer.exporters.tasks import infer_task, tasks
from edgeinfer.pipelines.export import export_model
from tests.conftest import run_cli

TASK_FILES = Path(__file__).parents[2] / "exporters" / "tasks"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


# Tasks that write several graphs into a folder, and the test file that exports their tiny models.
MULTI_GRAPH_TASKS = {"seq2seq-lm": "test_seq2seq_export.py", "speech-seq2seq": "test_whisper_export.py"}


def test_every_task_file_registers_one_task_and_a_declared_architecture_exports_each_task():
    """The tiny models behind each task are the declared architectures' (test_architectures.py)."""
    from edgeinfer.exporters.architectures import architectures

    files = sorted(p.stem for p in TASK_FILES.glob("*.py") if not p.stem.startswith("_"))
    assert sorted(name.replace("-", "_") for name in tasks()) == files
    covered = {t for a in architectures().values() for t in a.tasks}
    assert covered == set(tasks()), "declare an architecture with the new task (exporters/architectures)"
    for task, test_file in MULTI_GRAPH_TASKS.items():
        assert tasks()[task].parts and (Path(__file__).parent / test_file).is_file()


@pytest.mark.parametrize(
    "architecture, task",
    [
        ("BertModel", "feature-extraction"),
        ("BertForSequenceClassification", "text-classification"),
        ("RobertaForTokenClassification", "token-classification"),
        ("DistilBertForTokenClassification", "token-classification"),
        ("RobertaForQuestionAnswering", "question-answering"),
        ("BertForMaskedLM", "fill-mask"),
        ("RobertaForMultipleChoice", "multiple-choice"),
        ("DetrForObjectDetection", "object-detection"),
        ("YolosForObjectDetection", "object-detection"),
        ("SegformerForSemanticSegmentation", "semantic-segmentation"),
        ("Wav2Vec2ForCTC", "ctc"),
        ("HubertForCTC", "ctc"),
        ("Wav2Vec2ForSequenceClassification", "audio-classification"),
        ("HubertForSequenceClassification", "audio-classification"),
        ("ASTForAudioClassification", "audio-classification"),
        ("DistilBertForSequenceClassification", "text-classification"),
        ("ViTForImageClassification", "image-classification"),
        ("LlamaForCausalLM", "causal-lm"),
        ("GPT2LMHeadModel", "causal-lm"),
        ("T5ForConditionalGeneration", "seq2seq-lm"),
        ("BartForConditionalGeneration", "seq2seq-lm"),
        ("MarianMTModel", "seq2seq-lm"),
        ("WhisperForConditionalGeneration", "speech-seq2seq"),
        ("CLIPModel", "zero-shot-image-classification"),
        ("CLIPVisionModel", "feature-extraction"),
        ("SomethingUnheardOf", "feature-extraction"),
    ],
)
def test_the_architecture_name_picks_the_task(architecture, task):
    assert infer_task(architecture).name == task


@pytest.mark.parametrize(
    "architecture, head",
    [
        ("DeiTForImageClassificationWithTeacher", "image classification with teacher"),
        ("BertForPreTraining", "pre training"),
        ("Mask2FormerForUniversalSegmentation", "universal segmentation"),
        ("DPTForDepthEstimation", "depth estimation"),
        ("BertForNextSentencePrediction", "next sentence prediction"),
    ],
)
def test_a_head_no_task_exports_is_refused_never_dropped(architecture, head, tmp_path, capsys):
    """A checkpoint whose head edgeinfer cannot export is refused naming the head (exit 2, nothing
    written), not exported as feature-extraction with the head gone; --task feature-extraction
    is named as the way to export the body on purpose."""
    from edgeinfer.core.errors import UnsupportedError
    from tests.conftest import run_cli

    with pytest.raises(UnsupportedError, match=f"task head \\({head}\\)"):
        infer_task(architecture)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(f'{{"architectures": ["{architecture}"], "model_type": "roberta"}}')
    code, _, err = run_cli(capsys, "export", folder, "-o", tmp_path / "m.onnx")
    line = " ".join(err.split())
    assert code == 2 and f"({head})" in line and "--task feature-extraction" in line
    assert not (tmp_path / "m.onnx").exists()


def test_an_unknown_task_is_refused_listing_the_registered_ones(tmp_path, minilm_dir):
    with pytest.raises(
        ConfigError,
        match="unknown export task 'summarize' \\(valid: audio-classification, causal-lm, ctc, feature-extraction",
    ):
        export_model(str(minilm_dir), tmp_path / "m.onnx", task="summarize")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    ("architecture", "model_type", "said"),
    [
        ("Speech2TextForConditionalGeneration", "speech_to_text", "speech-to-text encoder-decoder"),
        ("LlavaForConditionalGeneration", "llava", "vision-language model"),
        ("BlipForConditionalGeneration", "blip", "image-captioning"),
        ("Gemma3ForConditionalGeneration", "gemma3", "SigLIP vision tower"),
    ],
)
def test_conditional_generation_models_that_are_not_text_seq2seq_are_named(
    architecture, model_type, said, tmp_path, capsys
):
    """`...ForConditionalGeneration` is not always T5-like: these are refused (exit 2) saying what
    they are, not with transformers' "Unrecognized configuration class ... AutoModelForSeq2SeqLM"."""
    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"architectures": [architecture], "model_type": model_type}))
    code, _, err = run_cli(capsys, "export", src, "-o", tmp_path / "out")
    assert code == 2 and said in err and "does not export it yet" in err, err
    assert "Unrecognized configuration class" not in err and not (tmp_path / "out").exists()
    # Asked for its body, it is still named, not loaded as a bare model and called "incomplete".
    code, _, err = run_cli(capsys, "export", src, "-o", tmp_path / "out.onnx", "--task", "feature-extraction")
    assert code == 2 and said in err and "incomplete" not in err, err


def test_ctc_head_ids_come_from_a_checked_vocabulary(tmp_path):
    """vocab.json is the user's file: a word delimiter in range is recorded; one out of range, a
    boolean or a missing one is not; a file over the budget or not a JSON object is refused."""
    from edgeinfer.core.errors import InputError
    from edgeinfer.exporters.tasks.ctc import MAX_VOCAB_BYTES, head_ids

    vocab = tmp_path / "vocab.json"
    config = {"pad_token_id": 0, "vocab_size": 32}
    assert head_ids(config, tmp_path) == {"blank": 0}
    vocab.write_text(json.dumps({"<pad>": 0, "|": 4, "E": 5}))
    assert head_ids(config, tmp_path) == {"blank": 0, "word_delimiter": 4}
    assert head_ids({"pad_token_id": -1, "vocab_size": 3}, tmp_path) == {"blank": 0}  # 4 is out of range
    vocab.write_text(json.dumps({"|": True}))
    assert head_ids(config, tmp_path) == {"blank": 0}
    assert head_ids({"pad_token_id": True, "vocab_size": 32}, tmp_path)["blank"] == 0  # a boolean is no id
    assert head_ids({"pad_token_id": 40, "vocab_size": 32}, tmp_path)["blank"] == 0  # nor one past the vocabulary
    assert head_ids({"pad_token_id": 3, "vocab_size": 32}, tmp_path)["blank"] == 3
    vocab.write_text(json.dumps(["<pad>", "|"]))
    with pytest.raises(InputError, match="must hold a JSON object"):
        head_ids(config, tmp_path)
    with vocab.open("wb") as f:  # sparse: over the budget without writing it
        f.truncate(MAX_VOCAB_BYTES + 1)
    with pytest.raises(InputError, match="at most 16 MiB are read"):
        head_ids(config, tmp_path)
