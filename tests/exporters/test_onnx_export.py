import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeinfer.core.errors import InputError, OutputExistsError, UnsupportedError, ValidationError
from edgeinfer.pipelines.export import export_model
from tests.conftest import run_cli

FACTORIES = Path(__file__).with_name("factories.py")


def test_lenet_export_is_validated_on_two_batch_sizes_and_recorded(lenet_onnx):
    side = json.loads(lenet_onnx.with_name(lenet_onnx.name + ".edgeinfer.json").read_text())
    step = side["steps"][0]
    assert step["op"] == "export"
    cases = step["metrics"]["cases"]
    assert [c["inputs"]["input"][0] for c in cases.values()] == [8, 9]
    assert step["metrics"]["max_abs_diff"] < 1e-4 and step["metrics"]["min_cosine"] > 0.99999
    assert side["source"]["kind"] == "factory"
    graph_input = onnx.load(str(lenet_onnx)).graph.input[0]
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # batch axis stays dynamic


def test_factory_with_two_outputs_and_padded_mask_exports(tmp_path):
    art = export_model(f"{FACTORIES}:two_outputs", tmp_path / "two.onnx")
    outs = art.validation["cases"]["second_shape"]["outputs"]
    assert set(outs) == {"output_0", "output_1"}


def test_graph_specialised_to_the_example_batch_is_refused(tmp_path):
    out = tmp_path / "traced.onnx"
    with pytest.raises(ValidationError) as e:
        export_model(f"{FACTORIES}:traced_batch", out, exporter="torchscript")
    assert "second_shape" in str(e.value) and "ONNX Runtime failed" in str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing shipped, no temporary left behind


def test_source_that_only_runs_at_one_batch_is_told_to_use_static_shapes(tmp_path):
    with pytest.raises(ValidationError, match="PyTorch source itself fails.*export with static_shapes=True"):
        export_model(f"{FACTORIES}:fixed_batch", tmp_path / "fixed.onnx")


def test_static_shapes_export_fixes_every_dimension(tmp_path):
    art = export_model(f"{FACTORIES}:fixed_batch", tmp_path / "fixed.onnx", static_shapes=True)
    dims = onnx.load(str(art.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, 6]


def test_tampered_graph_fails_validation_listing_every_mismatch(lenet_onnx, tmp_path):
    from edgeinfer.exporters.source import load_source
    from edgeinfer.exporters.validate import validate_onnx

    model = onnx.load(str(lenet_onnx))
    biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = onnx.numpy_helper.to_array(biggest) * 1.5
    biggest.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), biggest.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save(model, str(tampered))
    from edgeinfer.runtime import load

    src = load_source("edgeinfer.examples.digits:lenet")
    with pytest.raises(ValidationError) as e:
        validate_onnx(
            src.module, load(tampered), {"example": src.example, "second_shape": src.second}, src.output_names
        )
    assert len(e.value.mismatches) == 2
    assert "max abs diff" in e.value.mismatches[0]


def test_existing_output_is_kept_without_force(tmp_path):
    out = tmp_path / "keep.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="pass force=True to overwrite"):
        export_model(f"{FACTORIES}:two_outputs", out)
    assert out.read_bytes() == b"precious"


def test_missing_source_and_bad_factories_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        export_model(str(tmp_path / "nowhere"), tmp_path / "x.onnx")
    with pytest.raises(InputError, match="no function"):
        export_model(f"{FACTORIES}:missing", tmp_path / "x.onnx")
    with pytest.raises(InputError, match="torch.nn.Module"):
        export_model(f"{FACTORIES}:not_a_module", tmp_path / "x.onnx")
    stray = tmp_path / "weights.bin"
    stray.write_bytes(b"x")
    with pytest.raises(UnsupportedError):
        export_model(str(stray), tmp_path / "x.onnx")


def test_directory_without_config_json_is_refused(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        export_model(str(tmp_path / "model"), tmp_path / "x.onnx")


def test_pickled_only_checkpoint_is_refused_not_unpickled(tmp_path, minilm_dir):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(minilm_dir / "config.json", folder / "config.json")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 would run code if unpickled")
    with pytest.raises(InputError, match="does not unpickle"):
        export_model(str(folder), tmp_path / "x.onnx")


def test_remote_code_checkpoint_is_refused(tmp_path, minilm_dir):
    folder = tmp_path / "remote"
    shutil.copytree(minilm_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedError, match="never runs remote code"):
        export_model(str(folder), tmp_path / "x.onnx")


def test_pt2_program_exports_with_its_dynamic_batch(tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.randn(3, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "mlp.pt2"))
    art = export_model(str(tmp_path / "mlp.pt2"), tmp_path / "mlp.onnx")
    assert [c["inputs"] for c in art.validation["cases"].values()][1] != [
        c["inputs"] for c in art.validation["cases"].values()
    ][0]


def test_a_sequential_gets_its_input_positionally_whatever_the_example_calls_it(tmp_path):
    art = export_model(f"{FACTORIES}:sequential_image", tmp_path / "seq.onnx")
    assert [i.name for i in onnx.load(str(art.path)).graph.input] == ["image"]
    assert art.validation["max_abs_diff"] < 1e-4


def test_positional_example_inputs_are_named_after_forward_and_wrong_arity_is_refused(tmp_path, capsys):
    art = export_model(f"{FACTORIES}:positional_tuple", tmp_path / "pos.onnx")
    assert [i.name for i in onnx.load(str(art.path)).graph.input] == ["x", "mask"]
    seqs = [c["inputs"]["x"][1] for c in art.validation["cases"].values()]
    assert seqs[0] != seqs[1]  # the axes given by index reached both inputs
    code, _, err = run_cli(capsys, "export", f"{FACTORIES}:wrong_arity", "-o", tmp_path / "bad.onnx")
    assert code == 2 and "gives 3 example input(s) but MaskedMean.forward takes 2 (x, mask)" in err
    code, _, err = run_cli(capsys, "export", f"{FACTORIES}:sequential_two_named", "-o", tmp_path / "bad2.onnx")
    assert code == 2 and "gives 2 example input(s) but Sequential.forward takes 1 (input)" in err
    assert not list(tmp_path.glob("bad*"))


def test_an_output_named_like_an_input_is_renamed_and_the_file_is_valid(tmp_path):
    art = export_model(f"{FACTORIES}:denoiser", tmp_path / "unet.onnx")
    graph = onnx.load(str(art.path)).graph
    onnx.checker.check_model(onnx.load(str(art.path)), full_check=True)
    assert [i.name for i in graph.input] == ["sample", "timestep"] and [o.name for o in graph.output] == ["sample_out"]


def test_a_declared_sequence_axis_is_validated_at_a_second_length(tmp_path):
    art = export_model(f"{FACTORIES}:tagger", tmp_path / "tagger.onnx")
    cases = art.validation["cases"]
    shapes = [cases[c]["inputs"]["input_ids"] for c in cases]
    assert shapes == [[2, 7], [3, 8]]  # batch and sequence both changed
    assert shapes[1] == cases["second_shape"]["inputs"]["attention_mask"]


def test_an_output_that_is_zero_everywhere_fails_the_export_unless_allowed(tmp_path, capsys):
    """All-zero logits match all-zero logits whatever the export did: the export is refused (exit 2,
    nothing written) saying the check proves nothing; --allow-constant-outputs exports it, the
    validation naming what it did not check (CLI row, a warning, the sidecar) with a min cosine over
    the varying output only; compare scores the model against itself as cosine 1.0, not 0.0."""
    import json

    import numpy as np

    from tests.conftest import run_cli

    out = tmp_path / "zero.onnx"
    code, _, err = run_cli(capsys, "export", f"{FACTORIES}:zero_head", "-o", out, "--trust-source")
    line = " ".join(err.split())
    assert code == 2 and "outputs are constant: the check proves nothing" in line and "output_1" in line
    assert "--allow-constant-outputs" in line and not out.exists()
    code, stdout, err = run_cli(
        capsys, "export", f"{FACTORIES}:zero_head", "-o", out, "--trust-source", "--allow-constant-outputs"
    )
    assert code == 0, err
    line = " ".join((stdout + err).split())
    assert "not checked" in line and "output_1" in line and "one value everywhere" in line
    side = json.loads((tmp_path / "zero.onnx.edgeinfer.json").read_text())
    validation = side["steps"][-1]["metrics"]
    assert validation["constant_outputs"] == ["output_1"] and validation["passed"]
    assert side["steps"][-1]["config"]["allow_constant_outputs"] is True
    from edgeinfer.pipelines.compare import _cosines

    zeros = np.zeros((2, 3))
    assert list(_cosines(zeros, zeros)) == [1.0, 1.0] and list(_cosines(zeros, np.ones((2, 3)))) == [0.0, 0.0]


def test_an_exporter_failure_names_its_cause_in_one_line_without_colour_codes():
    """torch.onnx wraps the real reason ("No ONNX function found for ...") in a generic, coloured
    "Failed to export ... This is step 1/3 ... Next steps:" that ends before it; the message says
    the innermost cause."""
    from edgeinfer.exporters.onnx import export_cause

    try:
        try:
            raise RuntimeError("No ONNX function found for transformers.grouped_mm_fallback\n<full graph>")
        except RuntimeError as inner:
            raise ValueError(
                "Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of exporting. Next steps:"
            ) from inner
    except ValueError as outer:
        said = export_cause(outer)
    assert said == "RuntimeError: No ONNX function found for transformers.grouped_mm_fallback"
    try:
        raise TypeError("\x1b[91mbad\x1b[0m dtype")
    except TypeError as e:
        assert export_cause(e) == "TypeError: bad dtype"


def test_a_model_that_fails_in_pytorch_itself_is_the_models_fault_not_the_exporters(tmp_path, capsys):
    """A BatchNorm sized for other channels fails in eager PyTorch before any exporter runs: exit 2
    saying so, not "TorchScript export failed" (exit 3 or a blamed exporter)."""
    factory = tmp_path / "broken.py"
    factory.write_text(
        "import torch\n"
        "def model():\n"
        "    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(16))\n"
        "    return net, {'x': torch.randn(2, 3, 16, 16)}\n"
    )
    code, _, err = run_cli(capsys, "export", f"{factory}:model", "-o", tmp_path / "x.onnx")
    assert code == 2, err
    assert "the model fails in PyTorch itself" in err and "running_mean" in err
    assert "TorchScript" not in err and "torch.export" not in err and not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_a_mixture_of_experts_to_onnx_is_one_line_naming_the_operator_and_the_gguf_route(smollm2_hf, tmp_path, capsys):
    """Qwen3-MoE's expert routing has no ONNX operator: exit 2, one line naming it and saying what
    works instead, nothing on stdout (the TorchScript exporter's graph dump stays off), no colours."""
    from tests.conftest import run_cli
    from tests.exporters.llm_factories import tiny_llm

    src = tiny_llm("Qwen3MoeForCausalLM", tmp_path / "moe", smollm2_hf)
    code, out, err = run_cli(capsys, "export", src, "-o", tmp_path / "moe.onnx", "--exporter", "dynamo")
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and "grouped_mm" in last and "export the model to GGUF" in last
    assert out == "" and "\x1b[" not in err and not (tmp_path / "moe.onnx").exists()
