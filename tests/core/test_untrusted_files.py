"""Files a user treats as data never run code: each payload would write a marker file if it ran."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import run_cli


class _Payload:
    """Unpickling this calls open(marker, "w"): the marker's existence proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _real_pt2(path: Path) -> Path:
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x)

    program = torch.export.export(Tiny().eval(), (torch.randn(2, 4),))
    torch.export.save(program, str(path))
    return path


def test_pt2_export_works_when_it_holds_only_tensors(capsys, tmp_path):
    src = _real_pt2(tmp_path / "tiny.pt2")
    code, _, stderr = run_cli(capsys, "export", src, "-o", tmp_path / "tiny.onnx")
    assert code == 0, stderr
    assert (tmp_path / "tiny.onnx").is_file()


def test_pt2_with_pickled_code_is_refused_and_never_runs(capsys, tmp_path):
    import torch

    src = _real_pt2(tmp_path / "clean.pt2")
    marker = tmp_path / "PWNED"
    hostile = tmp_path / "hostile.pt2"
    buf = io.BytesIO()
    torch.save(_Payload(marker), buf)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(hostile, "w") as zout:
        members = zin.namelist()
        target = next(n for n in members if "sample_inputs" in n)
        for name in members:
            zout.writestr(name, buf.getvalue() if name == target else zin.read(name))
    code, _, stderr = run_cli(capsys, "export", hostile, "-o", tmp_path / "out.onnx")
    assert not marker.exists(), "the .pt2's pickle ran"
    assert code == 2 and "--trust-source" in stderr and "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.onnx").exists()


def test_sidecar_naming_a_factory_does_not_run_it_without_trust(capsys, lenet_onnx, tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\ndef lenet():\n    raise SystemExit(0)\n")
    model = tmp_path / "shipped.onnx"
    shutil.copy(lenet_onnx, model)
    sidecar = json.loads(Path(str(lenet_onnx) + ".edgeinfer.json").read_text())
    sidecar["source"] = {"kind": "factory", "factory": f"{evil}:lenet"}
    Path(str(model) + ".edgeinfer.json").write_text(json.dumps(sidecar))
    code, _, stderr = run_cli(capsys, "bench", model, "--runs", "2", "--warmup", "1", "--baseline", "auto")
    assert not marker.exists(), "code named by the sidecar ran"
    assert code == 2 and "--trust-source" in stderr and "Traceback" not in stderr, stderr


def _folder_with_remote_tokenizer(minilm_dir: Path, folder: Path, marker: Path) -> Path:
    shutil.copytree(minilm_dir, folder)
    (folder / "tokenization_evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import BertTokenizerFast\n"
        "class EvilTokenizer(BertTokenizerFast):\n    pass\n"
    )
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["auto_map"] = {"AutoTokenizer": [None, "tokenization_evil.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return folder


def test_tokenizer_config_with_auto_map_is_refused_without_running_it(capsys, minilm_dir, tmp_path):
    marker = tmp_path / "PWNED"
    folder = _folder_with_remote_tokenizer(minilm_dir, tmp_path / "minilm-evil", marker)
    code, _, stderr = run_cli(capsys, "export", folder, "-o", tmp_path / "out.onnx")
    assert not marker.exists(), "the tokenizer's remote code ran"
    assert code == 2 and "auto_map" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out.onnx").exists()


def test_tokenizer_named_by_a_sidecar_is_loaded_without_remote_code(capsys, minilm_onnx, minilm_dir, tmp_path):
    marker = tmp_path / "PWNED"
    folder = _folder_with_remote_tokenizer(minilm_dir, tmp_path / "tok-evil", marker)
    model = tmp_path / "m.onnx"
    shutil.copy(minilm_onnx, model)
    sidecar = json.loads(Path(str(minilm_onnx) + ".edgeinfer.json").read_text())
    sidecar["meta"]["tokenizer"] = str(folder)
    Path(str(model) + ".edgeinfer.json").write_text(json.dumps(sidecar))
    text = tmp_path / "s.txt"
    text.write_text("one sentence\nanother sentence\n")
    code, _, stderr = run_cli(capsys, "quantize", model, "-o", tmp_path / "q.onnx", "--eval-data", text)
    assert not marker.exists(), "the tokenizer's remote code ran"
    assert code == 2 and "auto_map" in stderr
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.slow
def test_factory_import_does_not_run_files_from_the_current_folder(tmp_path):
    """`./onnxscript.py` would shadow the real onnxscript if the current folder were on sys.path."""
    marker = tmp_path / "PWNED"
    for name in ("onnxscript.py", "onnx.py", "torch.py", "numpy.py"):
        (tmp_path / name).write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit('shadowed')\n")
    env = {**os.environ, "PYTHONPATH": ""}
    # -P: like the `edgeinfer` console script, python itself does not put the current folder on sys.path.
    proc = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            "from edgeinfer.cli import main; main()",
            "export",
            "edgeinfer.examples.digits:lenet",
            "-o",
            "lenet.onnx",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert not marker.exists(), "a file in the current folder was imported"
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "lenet.onnx").is_file()


def test_factory_in_the_current_folder_is_still_importable_by_name(capsys, tmp_path, monkeypatch):
    """Only the named module is taken from the current folder, which keeps `export mymodel:make` working."""
    (tmp_path / "mymodel_pkg_x.py").write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(3, 2)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n"
        "def make():\n"
        "    return M(), {'x': torch.randn(2, 3)}\n"
    )
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli(capsys, "export", "mymodel_pkg_x:make", "-o", tmp_path / "m.onnx")
    assert code == 0, stderr
