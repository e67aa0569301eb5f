import pytest

from edgeinfer.core.artifact import Step, load_artifact, new_artifact
from edgeinfer.core.errors import InputError, OutputExistsError
from edgeinfer.core.io import atomic_path, check_output


def test_sidecar_round_trips_steps_and_derives_history(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really onnx")
    art = new_artifact(
        model, {"kind": "factory", "factory": "x:y"}, Step("export", {"opset": 18}, {"max_abs_diff": 1e-6})
    )
    art.save()
    loaded = load_artifact(model)
    assert loaded.sha256 == art.sha256
    assert loaded.steps[0].config == {"opset": 18}
    assert loaded.validation == {"max_abs_diff": 1e-6}
    child_path = tmp_path / "q.onnx"
    child_path.write_bytes(b"smaller")
    child = loaded.derive(child_path, Step("quantize", {"method": "dynamic"}))
    assert [s.op for s in child.steps] == ["export", "quantize"]
    assert child.steps[-1].parent_sha256 == art.sha256


def test_load_artifact_marks_sidecar_stale_when_model_changed(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"a")
    new_artifact(model, {}, Step("export")).save()
    model.write_bytes(b"b")
    assert load_artifact(model).meta.get("stale_sidecar") is True


def test_load_artifact_rejects_corrupt_sidecar_with_advice(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"a")
    (tmp_path / "m.onnx.edgeinfer.json").write_text("{broken")
    with pytest.raises(InputError, match="re-export"):
        load_artifact(model)


def test_atomic_path_leaves_nothing_when_block_fails(tmp_path):
    final = tmp_path / "out.onnx"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_check_output_refuses_existing_file_and_the_input_itself(tmp_path):
    existing = tmp_path / "a.onnx"
    existing.write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="pass force=True to overwrite"):
        check_output(existing, [], force=False)
    check_output(existing, [], force=True)
    with pytest.raises(OutputExistsError, match="is the input"):
        check_output(existing, [existing], force=True)
