"""A bundle whose model runs on OpenVINO: the recipe's use-openvino step puts the candidate there,
the manifest records the runtime, device and precision, `verify` runs it on OpenVINO from a fresh
folder, run.py needs only openvino and numpy, and a manifest that lies about its runtime is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import forge_manifest, run_cli

pytestmark = pytest.mark.slow
pytest.importorskip("openvino", reason="OpenVINO is in the dev extra; CI installs it")

RECIPE = '[[steps]]\npass = "use-openvino"\n[steps.config]\ndevice = "CPU"\nprecision = "f32"\n'


@pytest.fixture(scope="module")
def ov_bundle(tmp_path_factory, lenet_onnx, digits_eval):
    work = tmp_path_factory.mktemp("ov")
    recipe = work / "recipe.toml"
    recipe.write_text(RECIPE)
    out = work / "bundle"
    proc = subprocess.run(
        [sys.executable, "-m", "edgeinfer", "optimize", str(lenet_onnx), "--device", "host", "--data",
         str(digits_eval), "--recipe", str(recipe), "--runs", "5", "-o", str(out), "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, json.loads(proc.stdout)


def test_the_bundle_records_openvino_and_verifies_on_it_from_a_fresh_folder(ov_bundle, tmp_path):
    out, report = ov_bundle
    (cand,) = report["candidates"]
    assert cand["steps"][-1] == {"pass": "use-openvino", "config": {"device": "CPU", "precision": "f32"}}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runtime"] == "openvino" and manifest["openvino"] == {"device": "CPU", "precision": "f32"}
    assert "openvino = " in (out / "recipe.toml").read_text()  # its version, beside onnxruntime's
    assert "needs only openvino and numpy" in (out / "README.md").read_text()
    cwd = tmp_path / "device"
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "edgeinfer", "verify", str(out), "--json"], cwd=cwd, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    verified = json.loads(proc.stdout)
    assert verified["passed"] and verified["providers"][0].startswith("OpenVINO:CPU (f32, ")
    assert verified["latency_ms"]["p50"] > 0 and verified["peak_memory_mb"] > 0


def test_run_py_needs_only_openvino_and_numpy(ov_bundle, tmp_path):
    out, _ = ov_bundle
    blocker = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('edgeinfer', 'onnxruntime', 'torch', 'transformers', 'onnx', 'nncf'):\n"
        "            raise ImportError('not on the device: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = ['run.py', {str(out / 'golden.npz')!r}, '--out', 'out.npz']\n"
        f"runpy.run_path({str(out / 'run.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", blocker], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "runtime: OpenVINO" in proc.stdout and ", CPU, f32" in proc.stdout and (tmp_path / "out.npz").is_file()


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda m: m.pop("openvino"), 'runtime "openvino" and an openvino entry'),
        (lambda m: m["openvino"].update(precision="fp64"), "precision"),
        (lambda m: m["openvino"].update(device="TPU"), "device"),
        (lambda m: m.update(runtime="llama.cpp", openvino=None), "does not run a ONNX model"),
        (lambda m: m.update(runtime="tensorflow"), "runtime"),
        (lambda m: m["openvino"].update(flags="--spin"), "flags"),
    ],
)
def test_a_manifest_that_lies_about_its_runtime_is_refused_with_exit_2(ov_bundle, tmp_path, capsys, edit, says):
    copy = tmp_path / "b"
    shutil.copytree(ov_bundle[0], copy)
    forge_manifest(copy, edit)
    code, _, err = run_cli(capsys, "verify", copy)
    assert code == 2 and says in " ".join(err.split()), err
