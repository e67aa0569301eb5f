"""Hugging Face checkpoints: real MiniLM weights (each export task's tiny model: test_export_tasks.py)."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_minilm_export_matches_pytorch_on_padded_batches(minilm_onnx, minilm_dir):
    side = json.loads(minilm_onnx.with_name(minilm_onnx.name + ".edgeinfer.json").read_text())
    metrics = side["steps"][0]["metrics"]
    shapes = [c["inputs"]["input_ids"] for c in metrics["cases"].values()]
    assert shapes[0][0] != shapes[1][0] and shapes[0][1] != shapes[1][1]
    assert metrics["max_abs_diff"] < 1e-3 and metrics["min_cosine"] > 0.9999
    assert side["meta"]["task"] == "feature-extraction"
    assert side["meta"]["tokenizer"] == str(minilm_dir.resolve())


def test_minilm_onnx_mean_pooled_embeddings_match_transformers(minilm_onnx, minilm_dir):
    import onnxruntime as ort
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    model = transformers.AutoModel.from_pretrained(str(minilm_dir)).eval()
    sentences = ["A cat sleeps.", "Latency matters on small devices, far more than people expect."]
    enc = tok(sentences, padding=True, return_tensors="np")
    sess = ort.InferenceSession(str(minilm_onnx), providers=["CPUExecutionProvider"])
    hidden = sess.run(None, {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")})[0]
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy()
    mask = enc["attention_mask"][..., None]
    pool = lambda h: (h * mask).sum(1) / mask.sum(1)  # noqa: E731
    a, b = pool(hidden), pool(ref)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.9999


def test_a_head_the_checkpoint_lacks_is_refused_unless_asked_for_and_then_recorded(minilm_dir, tmp_path, capsys):
    """MiniLM holds no classifier: exporting it as text-classification would validate a random head
    against itself. Refused, naming the weights and the way out; with --allow-new-head, recorded."""
    from tests.conftest import run_cli

    out = tmp_path / "cls.onnx"
    code, _, err = run_cli(capsys, "export", minilm_dir, "-o", out, "--task", "text-classification")
    assert code == 2 and "no weights for the text-classification head (classifier.bias" in err
    assert "--task feature-extraction" in err and "--allow-new-head" in err and not out.exists()
    code, _, err = run_cli(capsys, "export", minilm_dir, "-o", out, "--task", "text-classification", "--allow-new-head")
    assert code == 0, err
    side = json.loads(out.with_name(out.name + ".edgeinfer.json").read_text())
    assert side["source"]["new_head"] == ["classifier.bias", "classifier.weight"]
    assert "initialised at random" in err


def test_a_tokenizer_with_ids_the_model_has_no_embedding_for_is_refused_naming_both(minilm_dir, tmp_path, capsys):
    """A 1,000-token model beside MiniLM's 30,522-token tokenizer: exit 2 naming the token id and the
    vocab_size, not "the PyTorch source fails on this shape; export with --static-shapes"."""
    import shutil

    import transformers

    from tests.conftest import run_cli

    folder = tmp_path / "small-vocab"
    config = transformers.BertConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, vocab_size=1000
    )
    transformers.BertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, folder / name)
    code, _, err = run_cli(capsys, "export", folder, "-o", tmp_path / "m.onnx")
    line = " ".join(err.split())
    assert code == 2 and "vocab_size is 1000" in line and "belong to another model" in line, line
    assert "--static-shapes" not in line and not (tmp_path / "m.onnx").exists()
