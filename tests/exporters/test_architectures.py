"""The export registry per architecture: every declared model_type has a tiny model here (or, for
encoder-decoders, in its own test file) that exports each of its tasks from a `save_pretrained`
folder, runs in ONNX Runtime with parity to PyTorch on inputs the export never saw, is quantized
and is compared with its baseline by `edgeinfer compare`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.core.errors import ConfigError, UnsupportedError
from edgeinfer.exporters.architectures import Modality, architectures
from edgeinfer.exporters.tasks import infer_task
from tests.conftest import run_cli

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
VISION = dict(image_size=32, patch_size=8, **TINY)
TEXT = dict(vocab_size=30522, max_position_embeddings=64)  # MiniLM's WordPiece tokenizer


def _bert(head, labels: int = 3):
    import transformers as t

    return getattr(t, head)(t.BertConfig(**TINY, num_labels=labels))


def _gpt2(head):
    import transformers as t

    return getattr(t, head)(t.GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=4, n_positions=64))


def _llama(head):
    import transformers as t

    return getattr(t, head)(t.LlamaConfig(**TINY, **TEXT, num_key_value_heads=2))


def _vit(head):
    import transformers as t

    return getattr(t, head)(t.ViTConfig(**VISION, num_labels=5))


def _dinov2(head):
    import transformers as t

    return getattr(t, head)(t.Dinov2Config(**VISION, num_labels=5))


def _resnet(head):
    import transformers as t

    return getattr(t, head)(t.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5))


def _yolos(head):
    import transformers as t

    return t.YolosForObjectDetection(
        t.YolosConfig(**{**VISION, "image_size": [32, 32]}, num_detection_tokens=5, num_labels=4)
    )


def _detr(head):
    import transformers as t

    backbone = t.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], out_features=["stage2"])
    config = t.DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone=None, backbone_config=backbone, d_model=32,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=32,
        decoder_ffn_dim=32, num_queries=5, num_labels=4,
    )  # fmt: skip
    return t.DetrForObjectDetection(config)


def _segformer(head):
    import transformers as t

    config = t.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], num_attention_heads=[1, 2],
        decoder_hidden_size=16, num_labels=4, patch_sizes=[7, 3], strides=[4, 2],
    )  # fmt: skip
    return t.SegformerForSemanticSegmentation(config)


CTC_VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8, "N": 9, "I": 10}


def _wav2vec2(head):
    import transformers as t

    config = t.Wav2Vec2Config(
        **TINY, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, vocab_size=len(CTC_VOCAB), do_stable_layer_norm=True,
        feat_extract_norm="layer", num_labels=3,
    )  # fmt: skip
    return getattr(t, head)(config)


def _clip_vision(head):
    import transformers as t

    return t.CLIPVisionModel(t.CLIPVisionConfig(**VISION))


def _clip(head):
    import transformers as t

    return t.CLIPModel(t.CLIPConfig(text_config={**TINY, **TEXT}, vision_config=VISION, projection_dim=16))


def _siglip(head):
    import transformers as t

    return t.SiglipModel(t.SiglipConfig(text_config={**TINY, **TEXT}, vision_config=VISION))


# (model_type, task) -> a tiny random-weight model with that task's head.
MODELS = {
    ("bert", "feature-extraction"): lambda: _bert("BertModel"),
    ("bert", "text-classification"): lambda: _bert("BertForSequenceClassification"),
    ("bert", "token-classification"): lambda: _bert("BertForTokenClassification"),
    ("bert", "question-answering"): lambda: _bert("BertForQuestionAnswering", labels=2),  # start and end
    ("bert", "fill-mask"): lambda: _bert("BertForMaskedLM"),
    ("bert", "multiple-choice"): lambda: _bert("BertForMultipleChoice"),
    ("gpt2", "causal-lm"): lambda: _gpt2("GPT2LMHeadModel"),
    ("gpt2", "feature-extraction"): lambda: _gpt2("GPT2Model"),
    ("llama", "causal-lm"): lambda: _llama("LlamaForCausalLM"),
    ("llama", "feature-extraction"): lambda: _llama("LlamaModel"),
    ("vit", "image-classification"): lambda: _vit("ViTForImageClassification"),
    ("vit", "feature-extraction"): lambda: _vit("ViTModel"),
    ("dinov2", "feature-extraction"): lambda: _dinov2("Dinov2Model"),
    ("dinov2", "image-classification"): lambda: _dinov2("Dinov2ForImageClassification"),
    ("resnet", "image-classification"): lambda: _resnet("ResNetForImageClassification"),
    ("resnet", "feature-extraction"): lambda: _resnet("ResNetModel"),
    ("yolos", "object-detection"): lambda: _yolos(None),
    ("detr", "object-detection"): lambda: _detr(None),
    ("segformer", "semantic-segmentation"): lambda: _segformer(None),
    ("wav2vec2", "ctc"): lambda: _wav2vec2("Wav2Vec2ForCTC"),
    ("wav2vec2", "audio-classification"): lambda: _wav2vec2("Wav2Vec2ForSequenceClassification"),
    ("wav2vec2", "feature-extraction"): lambda: _wav2vec2("Wav2Vec2Model"),
    ("clip_vision_model", "feature-extraction"): lambda: _clip_vision(None),
    ("clip", "zero-shot-image-classification"): lambda: _clip(None),
    ("siglip", "zero-shot-image-classification"): lambda: _siglip(None),
}
# The metric compare scores each task head by (without --task).
HEAD_METRIC = {
    "token-classification": "tokens",
    "fill-mask": "fill-mask",
    "question-answering": "span",
    "object-detection": "detection",
    "semantic-segmentation": "segmentation",
    "ctc": "transcription",
    "feature-extraction": "embedding",
}
# Encoder-decoders export into folders; their tiny models live in these test files.
MULTI_GRAPH = {
    "t5": "test_seq2seq_export.py",
    "bart": "test_seq2seq_export.py",
    "marian": "test_seq2seq_export.py",
    "whisper": "test_whisper_export.py",
}


def test_every_declared_architecture_has_a_tiny_model_for_each_of_its_tasks():
    from edgeinfer.exporters.tasks import tasks

    declared = {(a.model_type, t) for a in architectures().values() for t in a.tasks if not tasks()[t].parts}
    assert declared == set(MODELS), "declare the architecture, and add its tiny model to MODELS"
    folders = {a.model_type for a in architectures().values() if any(tasks()[t].parts for t in a.tasks)}
    assert folders == set(MULTI_GRAPH)
    for model_type, test_file in MULTI_GRAPH.items():
        assert model_type in (Path(__file__).parent / test_file).read_text()
    assert all(a.tasks for a in architectures().values())


def _folder(key, tmp_path: Path, minilm_dir: Path, processor: bool = True) -> tuple[Path, object]:
    import torch
    import transformers

    torch.manual_seed(0)
    model = MODELS[key]().eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder, safe_serialization=True)
    modality = architectures()[key[0]].modality
    if modality in (Modality.TEXT, Modality.TEXT_IMAGE):
        for name in TOKENIZER_FILES:
            shutil.copy(minilm_dir / name, folder / name)
    if modality in (Modality.IMAGE, Modality.TEXT_IMAGE) and processor:
        transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    if modality is Modality.AUDIO:
        transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)
        (folder / "vocab.json").write_text(json.dumps(CTC_VOCAB))
    return folder, model


def _unseen_inputs(modality: Modality, names: set[str], task: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    ids = rng.integers(1000, 2000, (3, 2, 7) if task == "multiple-choice" else (3, 7))
    feeds = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
        "pixel_values": rng.standard_normal((5 if modality is Modality.TEXT_IMAGE else 3, 3, 32, 32)),
    }
    if modality is Modality.AUDIO:
        feeds = {"input_values": rng.standard_normal((3, 7_000)), "attention_mask": np.ones((3, 7_000))}
    floats = ("pixel_values", "input_values")
    return {n: v.astype(np.float32 if n in floats else np.int64) for n, v in feeds.items() if n in names}


CLIP_DATA = """
import numpy as np

def batches():
    rng = np.random.default_rng(0)
    for _ in range(4):
        ids = rng.integers(1000, 2000, (3, 6))
        yield {"input_ids": ids, "attention_mask": np.ones_like(ids),
               "pixel_values": rng.standard_normal((4, 3, 32, 32)).astype(np.float32)}
"""


def _eval_data(key, folder: Path, tmp_path: Path) -> str:
    modality = architectures()[key[0]].modality
    if key[1] == "multiple-choice":  # [samples, choices, sequence]
        ids = np.random.default_rng(4).integers(1000, 2000, (12, 3, 9))
        arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        np.savez(tmp_path / "choices.npz", **arrays, labels=ids[:, 0, 0] % 3)
        return str(tmp_path / "choices.npz")
    if modality is Modality.AUDIO:
        import transformers

        from edgeinfer.core.audio import synthetic_clips

        fe = transformers.AutoFeatureExtractor.from_pretrained(str(folder))
        clips = [c[: 4_000 + 500 * i] for i, c in enumerate(synthetic_clips(10, 1.0, seed=6))]
        out = fe(clips, sampling_rate=16_000, padding=True, return_tensors="np", return_attention_mask=True)
        mask = out["attention_mask"].astype(np.int64)  # the feature extractor gives int32; the graph takes int64
        np.savez(tmp_path / "clips.npz", input_values=out["input_values"], attention_mask=mask)
        return str(tmp_path / "clips.npz")
    if modality is Modality.TEXT:
        return str(Path(__file__).parents[2] / "edgeinfer" / "examples" / "sentences.txt")
    if modality is Modality.IMAGE:
        import transformers

        from edgeinfer.exporters.tasks._inputs import synthetic_images

        processor = transformers.AutoImageProcessor.from_pretrained(str(folder))
        pixels = processor(images=synthetic_images(16, seed=5), return_tensors="np")["pixel_values"]
        np.savez(tmp_path / "images.npz", pixel_values=pixels.astype(np.float32))
        return str(tmp_path / "images.npz")
    (tmp_path / "clip_data.py").write_text(CLIP_DATA)
    return f"{tmp_path / 'clip_data.py'}:batches"


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(MODELS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_each_declared_architecture_exports_runs_quantizes_and_compares(key, tmp_path, minilm_dir, capsys):
    import onnxruntime as ort
    import torch

    model_type, task = key
    folder, model = _folder(key, tmp_path, minilm_dir)
    out = tmp_path / "m.onnx"
    # No --task where the architecture name says it (BertForSequenceClassification), as a user would.
    said = infer_task(type(model).__name__).name == task
    code, stdout, err = run_cli(capsys, "export", folder, "-o", out, *([] if said else ["--task", task]), "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["meta"]["task"] == task and report["validation"]["passed"]
    side = json.loads((tmp_path / "m.onnx.edgeinfer.json").read_text())
    assert side["source"]["model_type"] == model_type and side["source"]["declared"] is True

    # Parity on inputs the export's validation never saw.
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    modality = architectures()[model_type].modality
    feeds = _unseen_inputs(modality, {i.name for i in session.get_inputs()}, task)
    got = session.run(None, feeds)[0]
    first = report["meta"]["outputs"][0]
    with torch.no_grad():
        want = getattr(model(**{n: torch.from_numpy(v) for n, v in feeds.items()}), first).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-3)

    # One compression method, then the baseline comparison a user would run.
    int8 = tmp_path / "m-int8.onnx"
    code, _, err = run_cli(capsys, "quantize", out, "-o", int8, "--method", "dynamic")
    assert code == 0, err
    data = _eval_data(key, folder, tmp_path)
    code, stdout, err = run_cli(capsys, "compare", out, int8, "--data", data, "--runs", "3", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    rows = result["rows"]
    assert len(rows) == 2 and rows[1]["file_size_bytes"] < rows[0]["file_size_bytes"]
    assert rows[1]["metrics"] and all(np.isfinite(v) for v in rows[1]["metrics"].values())
    if "cosine_mean" in rows[1]["metrics"]:
        assert rows[1]["metrics"]["cosine_mean"] > 0.9  # INT8 stays close to FP32 on these tiny models
    # A head is scored by its own metric against the baseline's decisions, the baseline agreeing with itself.
    assert result["task"] == HEAD_METRIC.get(task, result["task"]), result["task"]
    if task in HEAD_METRIC and task != "feature-extraction":
        assert rows[0]["metrics"]["agreement_with_baseline"] == 1.0
        assert 0.0 <= rows[1]["metrics"]["agreement_with_baseline"] <= 1.0


@pytest.mark.slow
def test_an_image_model_without_its_processor_is_refused_unless_given_a_size(tmp_path, minilm_dir, capsys):
    folder, _ = _folder(("vit", "image-classification"), tmp_path, minilm_dir, processor=False)
    code, _, err = run_cli(capsys, "export", folder, "-o", tmp_path / "a.onnx")
    assert code == 2 and "no preprocessor_config.json" in err and "--image-size" in err
    assert not (tmp_path / "a.onnx").exists()
    code, stdout, err = run_cli(capsys, "export", folder, "-o", tmp_path / "b.onnx", "--image-size", "32", "--json")
    assert code == 0, err
    shapes = [c["inputs"]["pixel_values"] for c in json.loads(stdout)["validation"]["cases"].values()]
    assert [s[1:] for s in shapes] == [[3, 32, 32], [3, 32, 32]]
    code, _, err = run_cli(capsys, "export", folder, "-o", tmp_path / "c.onnx", "--image-size", "big")
    assert code == 2 and "give N or HxW" in err


def test_a_declared_architecture_asked_for_a_task_it_lacks_is_refused_before_loading(tmp_path, minilm_dir):
    from edgeinfer.pipelines.export import export_model

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "clip_vision_model", "architectures": ["X"]}))
    (folder / "model.safetensors").write_bytes(b"not read: the task is refused first")
    with pytest.raises(
        ConfigError, match="clip_vision_model model exports as feature-extraction, not image-classification"
    ):
        export_model(str(folder), tmp_path / "m.onnx", task="image-classification")


@pytest.mark.slow
def test_an_undeclared_architecture_still_exports_through_its_task_and_says_so(tmp_path, minilm_dir):
    import transformers

    from edgeinfer.pipelines.export import export_model

    folder = tmp_path / "roberta"
    transformers.RobertaModel(transformers.RobertaConfig(**TINY, **TEXT)).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, folder / name)
    art = export_model(str(folder), tmp_path / "r.onnx")
    assert art.validation["passed"]
    side = json.loads((tmp_path / "r.onnx.edgeinfer.json").read_text())
    assert side["source"]["model_type"] == "roberta" and side["source"]["declared"] is False


@pytest.mark.slow
def test_an_undeclared_speech_encoder_takes_waveforms_from_its_forward(tmp_path):
    """HuBERT is not declared: its forward takes input_values, so its body exports on synthetic
    clips through its feature extractor (not through a tokenizer it does not have)."""
    import transformers

    from edgeinfer.pipelines.export import export_model

    folder = tmp_path / "hubert"
    config = transformers.HubertConfig(
        **TINY, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, vocab_size=len(CTC_VOCAB), do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )  # fmt: skip
    transformers.HubertModel(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)
    art = export_model(str(folder), tmp_path / "h.onnx")
    assert art.validation["passed"] and art.meta["inputs"][0] == "input_values"
    side = json.loads((tmp_path / "h.onnx.edgeinfer.json").read_text())
    assert side["source"]["model_type"] == "hubert" and side["source"]["declared"] is False


def test_a_processor_that_asks_for_remote_code_is_refused(tmp_path, minilm_dir):
    from edgeinfer.core.hf_folder import load_image_processor

    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"auto_map": {"AutoImageProcessor": "x.Y"}}))
    with pytest.raises(UnsupportedError, match="custom code"):
        load_image_processor(tmp_path)


@pytest.mark.slow
def test_zero_shot_data_with_fewer_label_texts_than_images_is_scored_per_image(tmp_path, minilm_dir, capsys):
    """The export gives label texts and images their own batch axes: an .npz with 3 label texts and
    10 labelled images is batched by image, every batch scored against all 3 labels."""
    key = ("clip", "zero-shot-image-classification")
    folder, _ = _folder(key, tmp_path, minilm_dir)
    out = tmp_path / "clip.onnx"
    code, _, err = run_cli(capsys, "export", folder, "-o", out)
    assert code == 0, err
    rng = np.random.default_rng(1)
    ids = rng.integers(1000, 2000, (3, 6))
    np.savez(
        tmp_path / "zero-shot.npz",
        input_ids=ids,
        attention_mask=np.ones_like(ids),
        pixel_values=rng.standard_normal((10, 3, 32, 32)).astype(np.float32),
        labels=rng.integers(0, 3, 10),
    )
    int8 = tmp_path / "clip-int8.onnx"
    code, _, err = run_cli(capsys, "quantize", out, "-o", int8, "--method", "dynamic")
    assert code == 0, err
    data = tmp_path / "zero-shot.npz"
    code, stdout, err = run_cli(
        capsys, "compare", out, int8, "--data", data, "--batch-size", "4", "--runs", "2", "--json"
    )
    assert code == 0, err
    base, cand = json.loads(stdout)["rows"]
    assert 0 <= base["metrics"]["accuracy"] <= 1 and 0 <= cand["metrics"]["agreement_with_baseline"] <= 1
    assert cand["delta"] == cand["metrics"]["accuracy"] - base["metrics"]["accuracy"]
