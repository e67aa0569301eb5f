"""Passes: one file, one registered pass; configs validate themselves and round-trip through plain
dicts (JSON and TOML types); a recipe of passes reproduces the step-by-step result byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from edgeinfer.core.config import required_fields
from edgeinfer.core.errors import ConfigError
from edgeinfer.pipelines.passes import PassContext, get_pass, make_config, passes, run_pass, run_recipe

PASS_FILES = Path(__file__).parents[2] / "edgeinfer" / "pipelines" / "passes"
# The least a config needs, for the passes whose config has required fields.
REQUIRED = {
    "quantize-onnx": {"method": "dynamic"},
    "quantize-gguf": {"type": "Q4_K_M"},
    "distill": {"teacher": "edgeinfer.examples.digits:lenet"},
}


def test_every_pass_file_registers_one_pass_named_after_it():
    files = sorted(p.stem.replace("_", "-") for p in PASS_FILES.glob("*.py") if p.stem != "__init__")
    assert sorted(passes()) == files


@pytest.mark.parametrize("name", sorted(passes()))
def test_configs_round_trip_through_json(name):
    p = get_pass(name)
    assert sorted(required_fields(p.config)) == sorted(REQUIRED.get(name, {}))
    cfg = make_config(name, REQUIRED.get(name))
    data = json.loads(json.dumps(cfg.to_dict()))  # plain types only: no enums, no tuples
    assert p.config.from_dict(data) == cfg and make_config(name, data) == cfg


def test_nested_configs_are_read_back_from_dicts():
    cfg = make_config(
        "prune", {"prune": {"method": "unstructured", "ratio": 0.3, "ignore": ["0"]}, "finetune": {"epochs": 2}}
    )
    assert cfg.prune.method.value == "unstructured" and cfg.prune.ignore == ("0",)  # type: ignore[attr-defined]
    assert cfg.finetune.epochs == 2 and cfg.to_dict()["prune"]["ratio"] == 0.3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "name, config, message",
    [
        ("quantize-onnx", {"method": "dynamic", "granularity": "row"}, "unknown quantization config key.*granularity"),
        ("quantize-gguf", {}, "needs type"),
        ("quantize-gguf", {"type": "Q3_X"}, "valid: .*Q4_K_M"),
        ("prune", {"prune": {"ratio": 1.5}}, "ratio must be between 0 and 1"),
        ("prune", {"finetune": {"lr": float("nan")}}, "lr is nan"),
        ("export-onnx", {"opset": 3}, "opset 3 is outside"),
        ("export-onnx", {"task": "summarize"}, "unknown export task 'summarize'"),
        ("export-gguf", {"check_tokens": 4}, "at least 16"),
        ("qat", {"qat": {"momentum": 0}}, "momentum must be in"),
        ("distill", {"teacher": "not a factory"}, "must be package.module:function"),
        ("sharpen", {}, "unknown pass 'sharpen'"),
    ],
)
def test_a_bad_config_fails_naming_the_field(name, config, message):
    with pytest.raises(ConfigError, match=message):
        make_config(name, config)


def test_a_pass_refuses_an_input_of_the_wrong_kind(tmp_path, lenet_onnx):
    with pytest.raises(ConfigError, match="quantize-gguf takes a .gguf model"):
        run_pass("quantize-gguf", lenet_onnx, tmp_path / "x.gguf", {"type": "Q8_0"})
    with pytest.raises(ConfigError, match="takes a PyTorch source, not the exported"):
        run_pass("export-onnx", lenet_onnx, tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_recipe_reproduces_the_steps_run_one_by_one(tmp_path):
    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.quantize import quantize

    factory = "edgeinfer.examples.digits:lenet"
    fp32 = tmp_path / "by-hand.onnx"
    export_model(factory, fp32)
    by_hand, _ = quantize(fp32, tmp_path / "by-hand-int8.onnx", OnnxQuantConfig("dynamic", per_channel=False))

    recipe = [("export-onnx", {}), ("quantize-onnx", {"method": "dynamic", "per_channel": False})]
    art = run_recipe(factory, tmp_path / "recipe.onnx", json.loads(json.dumps(recipe)), PassContext())

    assert _sha(art.path) == _sha(by_hand.path)  # the same passes and configs: the same bytes
    assert [s.op for s in art.steps] == ["export", "quantize"] and art.steps[1].config["per_channel"] is False
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".onnx") == [
        "by-hand-int8.onnx", "by-hand.onnx", "recipe.onnx",
    ]  # fmt: skip  # the recipe's intermediate file stayed in its temporary folder
