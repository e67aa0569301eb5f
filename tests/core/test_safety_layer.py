"""The safety rules as one layer: files sized from their headers before any allocation, typed
schemas for what edgeinfer reads, isolated child processes, locked outputs, scratch folders that
killed runs do not leave behind, recipes that run no code."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.core.errors import InputError
from tests.conftest import run_cli


def npz_bomb(path: Path, shape=(300_000, 1, 32, 32), name: str = "input") -> Path:
    """An .npz whose member declares `shape` float32 in its header but holds a few bytes: what a
    compressed file of zeros looks like to numpy, without building it here."""
    from numpy.lib import format as npy

    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{name}.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 64)
    return path


def test_an_npz_declaring_gigabytes_is_refused_from_its_header(tmp_path):
    import tracemalloc

    from edgeinfer.core.formats import load_npz, npz_declared_bytes

    bomb = npz_bomb(tmp_path / "bomb.npz")
    assert bomb.stat().st_size < 1000
    assert npz_declared_bytes(bomb) == {"input": 300_000 * 32 * 32 * 4}
    tracemalloc.start()
    with pytest.raises(InputError, match="declares 1,172 MiB of arrays; at most 512 MiB"):
        load_npz(bomb, max_bytes=512 << 20)
    assert tracemalloc.get_traced_memory()[1] < 50 << 20  # nothing near the declared size was allocated
    tracemalloc.stop()
    with pytest.raises(InputError, match="impossible shape"):
        load_npz(npz_bomb(tmp_path / "huge.npz", shape=(2**40, 2**40)))


def test_run_refuses_an_npz_bomb_as_input_with_exit_2(capsys, lenet_onnx, tmp_path):
    code, _, err = run_cli(
        capsys, "run", lenet_onnx, "--input", npz_bomb(tmp_path / "b.npz", shape=(2**20, 1, 2**10, 2**10))
    )
    assert code == 2 and "declares" in err and len(err.strip().splitlines()) == 1


def _wav(path: Path, rate: int, frames: int = 800, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(max(rate, 1))
        w.writeframes(b"\0\1" * frames * channels)
    if rate == 0:  # wave refuses to write a zero rate: patch the header's field (offset 24)
        data = bytearray(path.read_bytes())
        data[24:28] = (0).to_bytes(4, "little")
        path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("rate", [0, 1, 10_000_000])
def test_a_wav_with_an_absurd_rate_is_refused_before_resampling(tmp_path, rate):
    from edgeinfer.core.audio import read_wav

    with pytest.raises(InputError, match="sample rate"):
        read_wav(_wav(tmp_path / "x.wav", rate))


def test_a_normal_wav_still_reads_and_resamples(tmp_path):
    from edgeinfer.core.audio import read_wav

    data = read_wav(_wav(tmp_path / "x.wav", 8_000, frames=8_000))
    assert data.dtype == np.float32 and abs(len(data) - 16_000) <= 1


@pytest.mark.parametrize(
    "key,value", [("chunk_length", 100_000), ("sampling_rate", 0), ("n_fft", 10**9), ("feature_size", "80")]
)
def test_a_preprocessor_config_that_sizes_a_huge_allocation_is_refused(tmp_path, key, value):
    from edgeinfer.core.hf_folder import load_feature_extractor

    config = {"feature_extractor_type": "WhisperFeatureExtractor", "chunk_length": 30, "sampling_rate": 16000,
              "feature_size": 80, "n_fft": 400, "hop_length": 160, key: value}  # fmt: skip
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=key):
        load_feature_extractor(tmp_path)


def test_the_schema_layer_refuses_wrong_types_with_the_field_named():
    from edgeinfer.pipelines.deploy.manifest import Manifest

    good = {"schema": 1, "model": "m.onnx", "golden": "g.npz", "tolerance": {"min_cosine": 0.99, "max_abs_diff": 0.1},
            "files": {"m.onnx": {"size": 1, "sha256": "a" * 64}, "g.npz": {"size": 1, "sha256": "b" * 64}}}  # fmt: skip
    assert Manifest.parse(good, "manifest.json").threads is None
    bad = [
        ({"files": "m.onnx"}, "manifest.json.files"),
        ({"files": {}}, "lists no files"),
        ({"threads": "abc"}, "manifest.json.threads"),
        ({"threads": 10**5000}, "5001 digits"),
        ({"tolerance": {"min_cosine": float("nan"), "max_abs_diff": 0.1}}, "tolerance"),
        ({"tolerance": {"max_kld": 0.1, "min_top1": 0.5}}, "needs min_cosine"),
        ({"golden": "other.npz"}, "does not hash 'other.npz'"),
        ({"budgets": {"max_latency_ms": -1}}, "max_latency_ms"),
        ({"repack": "yes"}, "manifest.json.repack"),
        ({"surprise": 1}, "unknown key"),
    ]
    for change, says in bad:
        with pytest.raises(InputError, match=says.replace(".", r"\.").replace("(", r"\(")):
            Manifest.parse({**good, **change}, "manifest.json")


def test_an_edited_measurement_cache_entry_is_ignored_with_a_warning(tmp_path, caplog):
    from edgeinfer.pipelines.optimize.measurements import MeasurementCache

    cache = MeasurementCache({"x": 1}, root=tmp_path)
    steps = [("quantize-onnx", {"method": "dynamic"})]
    cache.put(steps, {"p50_ms": 1.5, "speedup": 2.0, "metrics": {"accuracy": 0.9}, "size_bytes": 10})
    assert cache.get(steps)["speedup"] == 2.0
    entry = tmp_path / f"{cache.key(steps)}.json"
    for edit in ({"speedup": "fast"}, {"p50_ms": -0.001}, {"metrics": {"accuracy": "NaN"}}, {"size_bytes": 1e400}):
        doc = json.loads(entry.read_text())
        entry.write_text(json.dumps({**doc, **edit}))
        assert cache.get(steps) is None
        assert "does not fit its schema" in caplog.text or "unreadable" in caplog.text
        cache.put(steps, {"p50_ms": 1.5, "speedup": 2.0})
    entry.write_text("{" * 100_000)
    assert cache.get(steps) is None


def test_a_recipe_naming_code_runs_nothing_without_trust_source(capsys, lenet_onnx, digits_eval, tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\ndef teacher():\n    pass\n")
    recipe = tmp_path / "evil.toml"
    recipe.write_text(f'[[steps]]\npass = "distill"\nconfig = {{ teacher = "{evil}:teacher" }}\n')
    code, _, err = run_cli(
        capsys, "optimize", lenet_onnx, "--data", digits_eval, "--recipe", recipe, "-o", tmp_path / "b"
    )
    assert code == 2 and "--trust-source" in err and "evil.py:teacher" in err
    assert not marker.exists() and not (tmp_path / "b").exists()


def test_a_second_optimize_of_one_bundle_is_refused_while_the_first_runs(capsys, lenet_onnx, digits_eval, tmp_path):
    from edgeinfer.core.io import output_lock

    out = tmp_path / "bundle"
    with output_lock(out):  # what a first, running `optimize -o bundle` holds
        code, _, err = run_cli(capsys, "optimize", lenet_onnx, "--data", digits_eval, "-o", out)
    assert code == 2 and "another edgeinfer run is writing" in err and not out.exists()


def test_scratch_folders_of_killed_runs_are_removed(tmp_path, monkeypatch):
    import tempfile

    from edgeinfer.core.io import scratch_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"edgeinfer-optimize-{dead.pid}-abc"
    (stale / "work").mkdir(parents=True)
    mine = tmp_path / f"edgeinfer-keep-float-{os.getpid()}-xyz"
    mine.mkdir()
    with scratch_dir("optimize") as folder:
        assert folder.is_dir() and folder.parent == tmp_path
        assert not stale.exists() and mine.exists()  # a live process's folder is kept
    assert not folder.exists()


def test_child_processes_never_import_from_the_working_folder(lenet_onnx, tmp_path, monkeypatch):
    from edgeinfer.pipelines.optimize.measurements import onnx_peak_memory_mb

    marker = tmp_path / "PWNED"
    (tmp_path / "json.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(0)\n")
    np.savez(tmp_path / "feeds.npz", input=np.zeros((1, 1, 32, 32), np.float32))
    monkeypatch.chdir(tmp_path)
    assert onnx_peak_memory_mb(lenet_onnx, tmp_path / "feeds.npz", ["cpu"], 1) > 10
    assert not marker.exists()


def test_evaluation_data_with_nan_or_impossible_labels_is_refused(capsys, lenet_onnx, digits_eval, tmp_path):
    with np.load(digits_eval) as d:
        x, y = d["input"], d["labels"]
    np.savez(tmp_path / "nan.npz", input=np.full_like(x, np.nan), labels=y)
    code, out, err = run_cli(capsys, "check", lenet_onnx, lenet_onnx, "--data", tmp_path / "nan.npz", "--max-drop", "0")
    assert code == 2 and "NaN" in err and "PASS" not in out
    np.savez(tmp_path / "labels.npz", input=x, labels=y + 100)
    code, _, err = run_cli(capsys, "compare", lenet_onnx, lenet_onnx, "--data", tmp_path / "labels.npz")
    assert code == 2 and "class indices 0 ... 9" in err


def test_a_text_that_is_not_utf8_is_one_line(capsys, smollm2, tmp_path):
    text = tmp_path / "latin1.txt"
    text.write_bytes("caf\xe9 au lait, ".encode("latin-1") * 50)
    code, _, err = run_cli(capsys, "compare", smollm2, smollm2, "--text", text)
    assert code == 2 and "not UTF-8" in err and len(err.strip().splitlines()) == 1
