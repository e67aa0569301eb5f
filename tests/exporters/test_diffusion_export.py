"""Diffusion models from their diffusers folders: the UNet (unconditional and text-conditioned) and
the VAE decoder export and validate against diffusers, FP16 is a compression option, and what is not
supported says so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli

pytest.importorskip("diffusers", reason="pip install 'edgeinfer[diffusion]' (in the dev extra)")
pytestmark = pytest.mark.slow


def _unet():
    import diffusers

    return diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
        norm_num_groups=4, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4,
    )  # fmt: skip


def _unet_conditioned():
    import diffusers

    return diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, attention_head_dim=4,
    )  # fmt: skip


def _vae():
    import diffusers

    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4, sample_size=16,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("build", "inputs", "output"),
    [
        (_unet, ["sample", "timestep"], "noise_pred"),
        (_unet_conditioned, ["sample", "timestep", "encoder_hidden_states"], "noise_pred"),
        (_vae, ["latent_sample"], "sample"),
    ],
    ids=["unet", "unet-conditioned", "vae-decoder"],
)
def test_a_diffusers_folder_exports_and_validates(build, inputs, output, tmp_path, capsys):
    import onnx
    import torch

    torch.manual_seed(0)
    folder = tmp_path / "model"
    build().save_pretrained(folder, safe_serialization=True)
    out = tmp_path / "m.onnx"
    code, stdout, err = run_cli(capsys, "export", folder, "-o", out, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["validation"]["passed"] and report["validation"]["max_abs_diff"] < 1e-3
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == inputs and [o.name for o in graph.output] == [output]
    batches = [c["inputs"][inputs[0]][0] for c in report["validation"]["cases"].values()]
    assert batches == [2, 3]  # validated at two batch sizes
    if output == "noise_pred":
        # FP16 as the compression option: half the weights, the same noise prediction within FP16's precision.
        half = tmp_path / "m-fp16.onnx"
        code, _, err = run_cli(capsys, "quantize", out, "-o", half, "--method", "fp16")
        assert code == 0, err
        weights = [sum(len(t.raw_data) for t in onnx.load(str(f)).graph.initializer) for f in (out, half)]
        assert weights[1] <= 0.51 * weights[0]  # the weights halve (a tiny graph's file is mostly its structure)
        import onnxruntime as ort

        rng = np.random.default_rng(0)
        feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 2 for d in i.shape]).astype(np.float32)
                 for i in ort.InferenceSession(str(out)).get_inputs()}  # fmt: skip
        feeds["timestep"] = np.array([10.0, 500.0], np.float32)
        ref = ort.InferenceSession(str(out)).run(None, feeds)[0]
        got = ort.InferenceSession(str(half)).run(None, feeds)[0]
        cos = float((ref * got).sum() / np.linalg.norm(ref) / np.linalg.norm(got))
        assert cos > 0.999
        # The comparison a user runs: both models on the same inputs, side by side.
        np.savez(tmp_path / "feeds.npz", **feeds)
        code, stdout, err = run_cli(
            capsys, "compare", out, half, "--data", tmp_path / "feeds.npz", "--runs", "3", "--json"
        )
        assert code == 0, err
        rows = json.loads(stdout)["rows"]
        assert rows[1]["metrics"]["cosine_mean"] > 0.999  # (the file: mostly graph at this size; weights halve above)


def test_what_is_not_supported_says_so(tmp_path, capsys):
    pipeline = tmp_path / "pipeline"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    code, _, err = run_cli(capsys, "export", pipeline, "-o", tmp_path / "p.onnx")
    assert code == 2 and "whole diffusers pipeline: export its models one by one" in err
    other = tmp_path / "controlnet"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "_diffusers_version": "0.30.0"}))
    code, _, err = run_cli(capsys, "export", other, "-o", tmp_path / "c.onnx")
    assert code == 2 and "diffusers ControlNetModel; edgeinfer exports UNet2DModel" in err
