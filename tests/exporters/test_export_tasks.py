"""Export tasks: every registered task exports a tiny model from its own Hugging Face folder, with
the task inferred from config.json's architecture name, and validates against transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeinfer.core.errors import ConfigError
from edgeinfer.exporters.tasks import infer_task, tasks
from edgeinfer.pipelines.export import export_model

TASK_FILES = Path(__file__).parents[2] / "exporters" / "tasks"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _tiny_bert(head: str):
    def build():
        import transformers

        config = transformers.BertConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_labels=3
        )
        return getattr(transformers, head)(config), True

    return build


def _tiny_vit():
    import transformers

    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_labels=5,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config), False


def _tiny_llama():
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config), True


def _tiny_dinov2():
    import transformers

    config = transformers.Dinov2Config(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4,
    )  # fmt: skip
    return transformers.Dinov2Model(config), False


def _tiny_clip_vision():
    import transformers

    config = transformers.CLIPVisionConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4,
    )  # fmt: skip
    return transformers.CLIPVisionModel(config), False


def _tiny_clip():
    import transformers

    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4),
        projection_dim=16,
    )  # fmt: skip
    return transformers.CLIPModel(config), True


# task -> a tiny random-weight model of an architecture that means that task (and whether it reads text)
TASK_MODELS = {
    "feature-extraction": _tiny_bert("BertModel"),
    "text-classification": _tiny_bert("BertForSequenceClassification"),
    "image-classification": _tiny_vit,
    "causal-lm": _tiny_llama,
    "zero-shot-image-classification": _tiny_clip,
}


# Tasks that write several graphs into a folder, and the test file that exports their tiny models.
MULTI_GRAPH_TASKS = {"seq2seq-lm": "test_seq2seq_export.py", "speech-seq2seq": "test_whisper_export.py"}


def test_every_task_file_registers_one_task_and_every_task_has_a_tiny_model():
    files = sorted(p.stem for p in TASK_FILES.glob("*.py") if not p.stem.startswith("_"))
    assert sorted(name.replace("-", "_") for name in tasks()) == files
    assert sorted(tasks()) == sorted([*TASK_MODELS, *MULTI_GRAPH_TASKS]), "add the new task's tiny model to TASK_MODELS"
    for task, test_file in MULTI_GRAPH_TASKS.items():
        assert tasks()[task].parts and (Path(__file__).parent / test_file).is_file()


@pytest.mark.parametrize(
    "architecture, task",
    [
        ("BertModel", "feature-extraction"),
        ("BertForSequenceClassification", "text-classification"),
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


def test_an_unknown_task_is_refused_listing_the_registered_ones(tmp_path, minilm_dir):
    with pytest.raises(ConfigError, match="unknown export task 'summarize' \\(valid: causal-lm, feature-extraction"):
        export_model(str(minilm_dir), tmp_path / "m.onnx", task="summarize")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASK_MODELS))
def test_each_task_exports_from_its_folder_and_matches_transformers(task, tmp_path, minilm_dir):
    import numpy as np
    import onnxruntime as ort
    import torch

    torch.manual_seed(0)
    model, reads_text = TASK_MODELS[task]()
    folder = tmp_path / "model"
    model.save_pretrained(folder, safe_serialization=True)
    if reads_text:
        for name in TOKENIZER_FILES:
            shutil.copy(minilm_dir / name, folder / name)

    art = export_model(str(folder), tmp_path / "m.onnx")  # no --task: read off the architecture

    assert art.meta["task"] == task and art.validation["passed"]
    assert art.meta["outputs"] == list(tasks()[task].outputs)
    side = json.loads((tmp_path / "m.onnx.edgeinfer.json").read_text())
    shapes = [c["inputs"] for c in side["steps"][0]["metrics"]["cases"].values()]
    assert len(shapes) == 2 and shapes[0] != shapes[1]  # validated on two input shapes
    # A third batch, never seen by the export's own validation, against the model itself.
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    if reads_text:
        ids = torch.randint(1000, 2000, (3, 7))
        feeds = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        feeds["pixel_values"] = torch.randn(5, 3, 32, 32)  # a dual encoder: five images against three labels
        feeds = {n: t for n, t in feeds.items() if n in names}
    else:
        feeds = {"pixel_values": torch.randn(3, 3, 32, 32)}
    got = session.run(None, {n: t.numpy() for n, t in feeds.items()})[0]
    with torch.no_grad():
        want = getattr(model.eval()(**feeds), art.meta["outputs"][0]).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("build", [_tiny_dinov2, _tiny_clip_vision], ids=["dinov2", "clip-vision"])
def test_image_encoders_export_their_features_without_a_tokenizer(build, tmp_path):
    import numpy as np
    import onnxruntime as ort
    import torch

    torch.manual_seed(0)
    model, _ = build()
    folder = tmp_path / "model"
    model.save_pretrained(folder, safe_serialization=True)
    art = export_model(str(folder), tmp_path / "m.onnx")
    assert art.meta["task"] == "feature-extraction" and art.validation["passed"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = model.eval()(pixel_values=pixels).last_hidden_state.numpy()
    np.testing.assert_allclose(session.run(None, {"pixel_values": pixels.numpy()})[0], want, atol=1e-4)
