"""optimize and verify on the digits CNN: every candidate measured, the fastest within budget
chosen, a bundle that verifies from a fresh folder in a fresh process, and tampering caught."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import forge_manifest, run_cli

pytestmark = pytest.mark.slow
FACTORY = "edgeinfer.examples.digits:lenet"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, digits_eval):
    out = tmp_path_factory.mktemp("optimize") / "lenet-bundle"
    proc = subprocess.run(
        [sys.executable, "-m", "edgeinfer", "optimize", FACTORY, "--device", "x86-avx512-vnni", "--data",
         str(digits_eval), "--max-drop", "0.01", "--runs", "10", "-o", str(out), "--json", "--report",
         str(out.parent / "report.html"), "--no-cache"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, json.loads(proc.stdout)


def test_every_candidate_is_measured_and_the_fastest_within_budget_is_chosen(bundle):
    path, report = bundle
    names = [c["name"] for c in report["candidates"]]
    assert names[0] == "fp32" and {"int8-dynamic", "int8-static", "int8-static-per-tensor"} <= set(names)
    assert all(c["p50_ms"] > 0 and c["size_bytes"] > 0 and c["memory_mb"] > 0 for c in report["candidates"])
    assert not any(c["cached"] for c in report["candidates"])  # --no-cache
    met = [c for c in report["candidates"] if c["met"]]
    assert report["chosen"] == max(met, key=lambda c: c["speedup_vs_fp32"])["name"]
    assert report["chosen"] in report["pareto"]  # the fastest within budget is never dominated
    page = (path.parent / "report.html").read_text()
    assert f"{report['chosen']} (chosen)" in page and page.count("<circle") == sum(
        1 for c in report["candidates"] if c["p50_ms"]
    )
    # The profile has OpenVINO's CPU: the same FP32 file compiled by OpenVINO is a candidate of its own
    # (never "the same file as fp32"), and so is NNCF's INT8 on it.
    ov = {c["name"]: c for c in report["candidates"] if c["name"].startswith("openvino-")}
    assert {"openvino-fp32"} <= set(ov) and any(n.startswith("openvino-int8") for n in ov)
    assert all(c["steps"][-1]["pass"] == "use-openvino" for c in ov.values())
    assert ov["openvino-fp32"]["sha256"] == report["candidates"][0]["sha256"]
    for c in report["candidates"]:
        assert c["met"] == (c["drop"] <= 0.01)  # the only budget given
        if c["name"].startswith("int8"):
            assert c["size_bytes"] < report["candidates"][0]["size_bytes"] / 2
            assert [s["pass"] for s in c["steps"]] == ["quantize-onnx"]


def test_the_bundle_verifies_from_a_fresh_folder_in_a_fresh_process(bundle, tmp_path):
    path, report = bundle
    files = {p.name for p in path.iterdir()}
    assert {"model.onnx", "manifest.json", "golden.npz", "recipe.toml", "run.py", "README.md"} <= files
    manifest = json.loads((path / "manifest.json").read_text())
    # The memory budget defaults to the profile's memory_mb.
    assert manifest["candidate"] == report["chosen"] and manifest["budgets"] == {
        "max_drop": 0.01,
        "max_memory_mb": 16384,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "edgeinfer", "verify", str(path), "--json"], cwd=tmp_path, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c["passed"] for c in json.loads(proc.stdout)["checks"]}
    assert checks == {"checksums": True, "providers": True, "golden outputs": True, "memory": True}


def test_run_py_needs_only_onnxruntime_and_numpy(bundle, tmp_path):
    path, _ = bundle
    blocker = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('edgeinfer', 'torch', 'transformers', 'onnx', 'sklearn'):\n"
        "            raise ImportError('not on the device: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = ['run.py', {str(path / 'golden.npz')!r}]\n"
        f"runpy.run_path({str(path / 'run.py')!r}, run_name='__main__')\n"
    )
    if json.loads((path / "manifest.json").read_text())["runtime"] == "openvino":  # timing chose it this run
        blocker = blocker.replace("'sklearn'", "'sklearn', 'onnxruntime'")
    proc = subprocess.run([sys.executable, "-c", blocker], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "providers: CPUExecutionProvider" in proc.stdout or "runtime: OpenVINO" in proc.stdout
    assert "shape [" in proc.stdout


def test_a_one_byte_change_fails_verify_naming_the_file(bundle, tmp_path, capsys):
    copy = tmp_path / "b"
    shutil.copytree(bundle[0], copy)
    model = copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    code, out, _ = run_cli(capsys, "verify", copy)
    assert code == 1 and "FAIL checksums: model.onnx does not match its sha256" in out


def test_a_manifest_path_outside_the_bundle_is_refused(bundle, tmp_path, capsys):
    copy = tmp_path / "b"
    shutil.copytree(bundle[0], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["../secret"] = {"size": 1, "sha256": "0" * 64}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "verify", copy)
    assert code == 2 and "a path outside the bundle" in err
    code, _, err = run_cli(capsys, "verify", tmp_path)
    assert code == 2 and "is not an edgeinfer bundle" in err


def _tampered(bundle, tmp_path, edit_manifest=None, golden=None):
    """A copy of the bundle with its manifest edited and/or its golden arrays replaced, re-hashed
    as a forger would (so the checksums pass and the check under test is reached)."""
    import numpy as np

    copy = tmp_path / "b"
    shutil.copytree(bundle[0], copy)
    if golden is not None:
        np.savez(copy / "golden.npz", **golden)
    return forge_manifest(copy, edit_manifest, lambda text: text.replace('"BIG"', "9" * 5000))


def _golden(bundle):
    import numpy as np

    with np.load(bundle[0] / "golden.npz") as g:
        return {k: g[k] for k in g.files}


@pytest.mark.parametrize(
    "edit,says",
    [
        (lambda m: m.update(files={}), "lists no files"),
        (lambda m: m.update(files="model.onnx"), "files is 'model.onnx'; expected an object"),
        (lambda m: m["tolerance"].update(min_cosine=float("nan")), "tolerance.min_cosine is nan"),
        (lambda m: m.update(threads="abc"), "threads is 'abc'"),
        (lambda m: m.update(threads="BIG"), "digits"),  # "BIG": 5,000 digits, written as JSON text below
        (lambda m: m.pop("golden"), "has no 'golden'"),
        (lambda m: m["files"].pop("model.onnx"), "does not hash 'model.onnx'"),
    ],
)
def test_a_manifest_that_does_not_fit_its_schema_is_refused_with_exit_2(bundle, tmp_path, capsys, edit, says):
    code, _, err = run_cli(capsys, "verify", _tampered(bundle, tmp_path, edit))
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_goldens_that_compare_nothing_or_do_not_fit_never_pass(bundle, tmp_path, capsys):
    golden = _golden(bundle)
    inputs = {k: v for k, v in golden.items() if not k.startswith("expected:")}
    code, out, _ = run_cli(capsys, "verify", _tampered(bundle, tmp_path / "a", golden=inputs))
    assert code == 1 and "FAIL golden outputs" in out and "nothing was compared" in out
    empty = {**golden, **{k: v[:0] for k, v in inputs.items()}}
    code, _, err = run_cli(capsys, "verify", _tampered(bundle, tmp_path / "b", golden=empty))
    assert code == 2 and "no golden inputs" in err
    renamed = {("bogus" if not k.startswith("expected:") else k): v for k, v in golden.items()}
    code, _, err = run_cli(capsys, "verify", _tampered(bundle, tmp_path / "c", golden=renamed))
    assert code == 2 and "unknown input(s) bogus" in err
    from tests.core.test_safety_layer import npz_bomb

    copy = _tampered(bundle, tmp_path / "d")
    npz_bomb(copy / "golden.npz")  # 1.2 GB declared in a few hundred bytes, re-hashed by the forger
    code, _, err = run_cli(capsys, "verify", forge_manifest(copy))
    assert code == 2 and "declares 1,172 MiB of arrays" in err


def test_files_the_manifest_does_not_list_and_links_fail_verify(bundle, tmp_path, capsys):
    copy = _tampered(bundle, tmp_path / "a")
    marker = tmp_path / "PWNED"
    (copy / "json.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    # What the bundle's README tells the operator to run: the `edgeinfer` command (`python -m`
    # would put the folder on the path of the CLI's own interpreter, edgeinfer's children aside).
    command = Path(sys.executable).with_name("edgeinfer")
    proc = subprocess.run([str(command), "verify", "."], cwd=copy, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "json.py is not listed in the manifest" in proc.stdout, proc.stdout + proc.stderr
    assert not marker.exists()
    linked = _tampered(bundle, tmp_path / "b")
    outside = tmp_path / "elsewhere.json"
    outside.write_text((linked / "manifest.json").read_text())
    (linked / "manifest.json").unlink()
    (linked / "manifest.json").symlink_to(outside)
    code, _, err = run_cli(capsys, "verify", linked)
    assert code == 2 and "is a link" in err


def test_a_truncated_bundle_archive_is_exit_2_not_an_interrupt(bundle, tmp_path, capsys):
    from edgeinfer.pipelines.deploy.bundle import write_archive

    copy = tmp_path / "lenet-bundle"
    shutil.copytree(bundle[0], copy)
    archive = write_archive(copy)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    code, _, err = run_cli(capsys, "verify", cut)
    assert code == 2 and "damaged" in err or "could not be unpacked" in err, err


def test_a_budget_no_candidate_meets_exits_1_names_the_closest_and_writes_nothing(digits_eval, tmp_path, capsys):
    out = tmp_path / "none"
    code, _, err = run_cli(
        capsys,
        "optimize",
        FACTORY,
        "--data",
        digits_eval,
        "--max-size",
        "0.01",
        "--runs",
        "3",
        "-o",
        out,
        "--no-cache",
    )  # fmt: skip (no cache: an fp32 measured by an earlier run would be the closest known)
    assert code == 1 and "no candidate met the budgets" in err and "closest: int8" in err
    assert not out.exists()
    code, _, err = run_cli(
        capsys, "optimize", FACTORY, "--data", digits_eval, "--max-size", "0.01", "--runs", "3", "-o", out,
        "--keep-best",
    )  # fmt: skip
    assert code == 1 and (out / "manifest.json").exists()


def test_minilm_keeps_the_cosine_budget_and_ships_its_tokenizer(minilm_dir, tmp_path):
    from edgeinfer.devices import get_profile
    from edgeinfer.examples import SENTENCES
    from edgeinfer.pipelines.optimize import Budgets, optimize

    out = tmp_path / "minilm-bundle"
    report = optimize(
        str(minilm_dir), out, data=str(SENTENCES), profile=get_profile("x86-avx512-vnni"),
        budgets=Budgets(max_drop=0.01), runs=5, use_cache=False,
    )  # fmt: skip
    by_name = {c.name: c for c in report.candidates}
    assert report.task == "embedding" and by_name["fp32"].drop == 0.0
    dyn, per_tensor = by_name["int8-dynamic"], by_name["int8-dynamic-per-tensor"]
    assert dyn.drop is not None and 0 < dyn.drop <= 0.01 and dyn.met  # per-channel keeps the cosine
    assert per_tensor.drop is not None and per_tensor.drop > dyn.drop  # per-tensor loses more
    chosen = by_name[report.chosen or ""]
    assert chosen.met and chosen.speedup == max(c.speedup or 0 for c in report.candidates if c.met)
    assert (out / "tokenizer" / "tokenizer.json").exists()
    assert _verify_in_a_fresh_process(out, tmp_path)["passed"]


def test_a_recipe_replays_to_identical_bytes_and_is_refused_for_another_source(
    bundle, lenet_onnx, digits_eval, tmp_path, capsys
):
    path, _ = bundle
    code, out, err = run_cli(
        capsys, "optimize", FACTORY, "--data", digits_eval, "--recipe", path / "recipe.toml", "--runs", "3",
        "-o", tmp_path / "again", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert [c["name"] for c in report["candidates"]] == ["replay"] and report["replay"]["identical_bytes"]
    first = json.loads((path / "manifest.json").read_text())["files"]["model.onnx"]["sha256"]
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["files"]["model.onnx"]["sha256"] == first
    # A recipe made from one .onnx file, replayed on another, is refused before anything runs.
    code, _, err = run_cli(capsys, "optimize", lenet_onnx, "--data", digits_eval, "--runs", "3", "-o", tmp_path / "m")
    assert code == 0, err
    other = tmp_path / "other.onnx"
    other.write_bytes(lenet_onnx.read_bytes())
    other.with_name("other.onnx.edgeinfer.json").write_bytes(
        lenet_onnx.with_name(lenet_onnx.name + ".edgeinfer.json").read_bytes()
    )
    data = bytearray(other.read_bytes())
    data[-1] ^= 0x01
    other.write_bytes(bytes(data))
    code, _, err = run_cli(
        capsys, "optimize", other, "--data", digits_eval, "--recipe", tmp_path / "m" / "recipe.toml", "-o",
        tmp_path / "n",
    )  # fmt: skip
    assert code == 2 and "was made from another source" in err and not (tmp_path / "n").exists()


def test_the_npu_profile_gets_a_qnn_qdq_model_that_verifies_on_the_simulator(digits_eval, tmp_path, capsys):
    out = tmp_path / "npu"
    code, stdout, err = run_cli(
        capsys, "optimize", FACTORY, "--device", "snapdragon-npu", "--data", digits_eval, "--max-drop", "0.02",
        "--runs", "3", "-o", out, "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    assert report["chosen"] == "int8-static-qnn" and "QNN HTP simulator" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["providers"] == ["QNNExecutionProvider"]
    assert manifest["inputs"][0]["shape"][0] == "8"  # the NPU profile fixed the shapes at export
    assert _verify_in_a_fresh_process(out, tmp_path)["providers"][0] == "QNNExecutionProvider"
    # Replacing a bundle needs --force; a folder that is not a bundle is never replaced.
    code, _, err = run_cli(capsys, "optimize", FACTORY, "--data", digits_eval, "-o", out)
    assert code == 2 and "exists; pass --force to replace it" in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    code, _, err = run_cli(capsys, "optimize", FACTORY, "--data", digits_eval, "-o", tmp_path / "notes", "--force")
    assert code == 2 and "is no edgeinfer bundle" in err and (tmp_path / "notes" / "mine.txt").exists()


def test_an_archive_verifies_and_one_with_an_escaping_member_is_refused(bundle, tmp_path, capsys):
    import io
    import tarfile

    from edgeinfer.pipelines.deploy.bundle import write_archive

    copy = tmp_path / "lenet-bundle"
    shutil.copytree(bundle[0], copy)
    archive = write_archive(copy)
    assert archive.name == "lenet-bundle.tar.gz"
    code, out, _ = run_cli(capsys, "verify", archive)
    assert code == 0 and "PASS golden outputs" in out
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    code, _, err = run_cli(capsys, "verify", evil)
    assert code == 2 and "a path outside the bundle" in err and not (tmp_path.parent / "escape.txt").exists()


def test_a_brute_force_measurement_by_another_route_confirms_the_choice(bundle, digits_eval, tmp_path, capsys):
    """Every candidate built again through `export` and `quantize`, all timed in one interleaved
    `compare`: the same bytes score the same, and no candidate within the budget is faster than the
    chosen one beyond the 95% interval."""
    _, report = bundle
    fp32 = tmp_path / "fp32.onnx"
    assert run_cli(capsys, "export", FACTORY, "-o", fp32)[0] == 0
    files = {"fp32": fp32}
    # ONNX Runtime's candidates (OpenVINO's run on another runtime, which `compare` does not time)
    ort = [c for c in report["candidates"][1:] if [s["pass"] for s in c["steps"]] == ["quantize-onnx"]]
    for c in ort:
        (step,) = c["steps"]
        cfg = step["config"]
        out = tmp_path / f"{c['name']}.onnx"
        args = ["quantize", fp32, "-o", out, "--method", cfg["method"], "--device", "x86-avx512-vnni"]
        args += ["--per-channel" if cfg.get("per_channel", True) else "--per-tensor"]
        args += ["--calib", digits_eval] if cfg["method"] == "static" else []
        assert run_cli(capsys, *args)[0] == 0
        files[c["name"]] = out
    code, out, err = run_cli(capsys, "compare", *files.values(), "--data", digits_eval, "--runs", "30", "--json")
    assert code == 0, err
    rows = dict(zip(files, json.loads(out)["rows"]))
    from edgeinfer.core.io import sha256_file

    for c in [report["candidates"][0], *ort]:
        if sha256_file(files[c["name"]]) == c["sha256"]:  # the same bytes: the same accuracy
            assert rows[c["name"]]["metrics"]["accuracy"] == pytest.approx(c["metrics"]["accuracy"])
    base_acc = rows["fp32"]["metrics"]["accuracy"]
    within = [n for n, r in rows.items() if base_acc - r["metrics"]["accuracy"] <= 0.01]
    if report["chosen"].startswith("openvino-"):  # timing chose OpenVINO this run: ORT rows rank nothing
        assert next(c for c in report["candidates"] if c["name"] == report["chosen"])["met"]
        return
    assert report["chosen"] in within
    chosen_hi = 1.0 if report["chosen"] == "fp32" else rows[report["chosen"]]["speedup_ci95"][1]
    for name in within:
        if name not in ("fp32", report["chosen"]):
            assert rows[name]["speedup_ci95"][0] <= chosen_hi, (name, rows[name], report["chosen"])


def test_the_size_objective_does_not_measure_what_cannot_be_smaller(digits_eval, tmp_path):
    from edgeinfer.devices import get_profile
    from edgeinfer.pipelines.optimize import Budgets, Objective, optimize

    report = optimize(
        FACTORY, tmp_path / "small", data=str(digits_eval), profile=get_profile("x86-avx512-vnni"),
        budgets=Budgets(max_drop=0.01), objective=Objective.SIZE, runs=3, use_cache=False,
    )  # fmt: skip
    by_name = {c.name: c for c in report.candidates}
    chosen = by_name[report.chosen or ""]
    assert chosen.name.startswith("int8") and chosen.met
    assert chosen.size_bytes == min(c.size_bytes or 0 for c in report.candidates if c.met)
    skipped = [c for c in report.candidates if any(f.startswith("not measured: no smaller") for f in c.failed)]
    assert by_name["fp32"] in skipped  # the largest file is never measured once an INT8 one fits
    for c in skipped:
        rival = by_name[c.failed[0].split("no smaller than ")[1].split(",")[0]]
        assert rival.met and (rival.size_bytes or 0) <= (c.size_bytes or 0) and c.p50_ms is None


def test_an_interrupted_search_leaves_no_bundle_and_resumes_from_its_measurements(digits_eval, tmp_path):
    import os
    import signal
    import time

    env = {**os.environ, "EDGEINFER_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "bundle"
    args = [sys.executable, "-m", "edgeinfer", "optimize", FACTORY, "--device", "x86-avx512-vnni", "--data",
            str(digits_eval), "--max-drop", "0.01", "--runs", "5", "-o", str(out), "--json"]  # fmt: skip
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731 (Ctrl-C as at a terminal)
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    measured = tmp_path / "cache" / "measurements"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(measured.glob("*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the search
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert not out.exists() and not list(tmp_path.glob(".bundle*"))  # no half-written bundle
    done = len(list(measured.glob("*.json")))
    assert done >= 2
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    report = json.loads(again.stdout)
    cached = [c["name"] for c in report["candidates"] if c["cached"]]
    # Every entry the first run stored is reused, but by the contenders for the choice, which are
    # measured again (at most once each) before one ships: a cache entry is a hint, never a figure
    # in a manifest.
    remeasured = [c["name"] for c in report["candidates"] if c["met"] and not c["cached"]]
    assert report["chosen"] not in cached and len(cached) + len(remeasured) >= done
    assert "fp32" in cached + remeasured  # fp32 was measured first
    assert (out / "manifest.json").exists()
    # An edited entry that fits the schema (a candidate claiming 50x) orders the search, but the
    # figure never ships: the candidate it promotes is measured again before its bundle is written.
    for entry in measured.glob("*.json"):
        doc = json.loads(entry.read_text())
        if doc["steps"] and doc["steps"][0][1].get("method") == "dynamic":
            entry.write_text(json.dumps({**doc, "speedup": 50.0, "p50_ms": 0.001}))
    forged = subprocess.run([*args[:-3], "-o", str(tmp_path / "forged"), "--json"], env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert forged.returncode == 0, forged.stderr[-2000:]
    chosen = next(
        c for c in json.loads(forged.stdout)["candidates"] if c["name"] == json.loads(forged.stdout)["chosen"]
    )
    assert not chosen["cached"] and chosen["speedup_vs_fp32"] < 50 and chosen["p50_ms"] > 0.001
    shipped = json.loads((tmp_path / "forged" / "manifest.json").read_text())["measured"]
    assert shipped.get("speedup", 0) < 50 and shipped.get("p50_ms", 1) > 0.001


def test_training_data_adds_pruned_candidates_whose_recipe_replays(digits_eval, tmp_path, capsys):
    out = tmp_path / "pruned"
    common = ["--data", digits_eval, "--runs", "5", "--json", "--no-cache"]
    code, stdout, err = run_cli(
        capsys, "optimize", FACTORY, "--device", "x86-avx512-vnni", "--max-drop", "0.01", "--train-data",
        "edgeinfer.examples.digits:loaders", "-o", out, *common,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)  # the fine-tuning epochs went to stderr, not into the JSON
    by_name = {c["name"]: c for c in report["candidates"]}
    fp32 = by_name["fp32"]
    for name, ratio in (("pruned-25", 0.25), ("pruned-50", 0.5)):
        c = by_name[name]
        assert [s["pass"] for s in c["steps"]] == ["prune"] and c["steps"][0]["config"]["prune"]["ratio"] == ratio
        assert c["size_bytes"] < fp32["size_bytes"] and c["p50_ms"] > 0 and c["drop"] is not None
    assert by_name["pruned-50"]["size_bytes"] < by_name["pruned-25"]["size_bytes"]
    met = [c for c in report["candidates"] if c["met"]]
    assert report["chosen"] == max(met, key=lambda c: c["speedup_vs_fp32"])["name"]
    recipe = (out / "recipe.toml").read_text()
    first = recipe.split('pass = "', 1)[1].split('"', 1)[0]
    assert first == ("prune" if report["chosen"].startswith("pruned") else "export-onnx")
    code, stdout, err = run_cli(
        capsys, "optimize", FACTORY, "--recipe", out / "recipe.toml", "--train-data",
        "edgeinfer.examples.digits:loaders", "-o", tmp_path / "again", *common,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["candidates"][0]["steps"] == by_name[report["chosen"]]["steps"]
    code, _, err = run_cli(
        capsys, "optimize", tmp_path / "again" / "model.onnx", "--train-data", "edgeinfer.examples.digits:loaders",
        "-o", tmp_path / "x", *common,
    )  # fmt: skip
    assert code == 2 and "start from a PyTorch factory" in err


def test_a_static_candidate_that_misses_only_the_metric_gets_its_noisiest_nodes_kept_in_float(digits_eval, tmp_path):
    import numpy as np

    from edgeinfer.devices import get_profile
    from edgeinfer.pipelines.optimize import Budgets, optimize

    # Scored without labels, the metric is 1 - cosine of the logits: above 0 for any INT8 model on
    # any CPU, so every static candidate surely misses max_drop 0. (Top-1 accuracy on digits can
    # drop exactly 0.0, as it does with the VNNI/AMX kernels of an Intel Xeon.)
    unlabelled = tmp_path / "digits-inputs.npz"
    with np.load(digits_eval) as d:
        np.savez(unlabelled, input=d["input"])
    report = optimize(
        "edgeinfer.examples.digits:resnet_trained", tmp_path / "resnet", data=str(unlabelled),
        profile=get_profile("x86-avx512-vnni"), budgets=Budgets(max_drop=0.0), runs=3, use_cache=False,
    )  # fmt: skip
    by_name = {c.name: c for c in report.candidates}
    derived = [c for c in report.candidates if "-keep" in c.name]
    assert derived, [(c.name, c.drop, c.failed) for c in report.candidates]
    for c in derived:
        parent = by_name[c.name.rsplit("-keep", 1)[0]]
        ((_, cfg),) = c.steps
        assert parent.steps[0][1]["method"] == "static" and not parent.met and parent.drop and parent.drop > 0
        assert cfg["exclude_nodes"] and len(cfg["exclude_nodes"]) == int(c.name.rsplit("-keep", 1)[1])
        assert {k: v for k, v in cfg.items() if k != "exclude_nodes"} == parent.steps[0][1]
        assert c.drop is not None and c.drop < parent.drop  # the float nodes bought accuracy back


def test_a_local_ray_instance_listens_on_the_loopback_address_only():
    """`--executor ray` without --ray-address starts Ray here: none of its servers (GCS, raylet,
    workers) may be reachable from the network for the length of the search."""
    pytest.importorskip("ray", reason="pip install 'edgeinfer[ray]' (in the dev extra)")
    import psutil

    from edgeinfer.pipelines.optimize.executors import RayExecutor

    executor = RayExecutor()
    try:
        assert {n["NodeManagerAddress"] for n in executor.ray.nodes()} == {"127.0.0.1"}
        ours = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
        listening = [
            c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in ours
        ]
        assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip in listening), listening
    finally:
        executor.close()


def test_ray_tasks_give_the_serial_executors_choice_and_figures(digits_eval, tmp_path):
    """The digits CNN measured by a local Ray instance and in-process: the same candidates, the
    same bytes and quality figures, the same choice, which is measured again here before it ships.
    (ONNX Runtime's candidates: OpenVINO's FP32 and BF16 time within noise of ONNX Runtime's FP32
    on this CNN, and two timing runs need not rank a tie alike.)"""
    pytest.importorskip("ray", reason="pip install 'edgeinfer[ray]' (in the dev extra)")
    from dataclasses import replace

    from edgeinfer.devices import get_profile
    from edgeinfer.pipelines.optimize import Budgets, optimize

    reports = {
        how: optimize(
            FACTORY,
            tmp_path / how,
            data=str(digits_eval),
            profile=replace(get_profile("x86-avx512-vnni"), openvino_device=None),
            budgets=Budgets(max_drop=0.01),
            runs=10,
            use_cache=False,
            executor=how,
        )  # fmt: skip
        for how in ("serial", "ray")
    }
    serial, ray = reports["serial"], reports["ray"]
    assert ray.chosen == serial.chosen
    for a, b in zip(serial.candidates, ray.candidates):
        assert (a.name, a.steps, a.sha256, a.size_bytes, a.drop, a.metrics.get("accuracy")) == (
            b.name, b.steps, b.sha256, b.size_bytes, b.drop, b.metrics.get("accuracy"),
        )  # fmt: skip
        assert a.measured_on is None
        if b.name == ray.chosen:
            assert b.measured_on is None  # re-measured on this machine, alone
        elif b.steps:
            assert b.measured_on and b.measured_on.startswith("ray:")
        # Workers time under this process's OpenMP setting (a mismatch fails the candidate).
        assert not any("OpenMP" in why for why in b.failed), b.failed
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["measured"]["drop"] == next(c.drop for c in serial.candidates if c.name == serial.chosen)


def test_a_ray_node_that_is_the_device_gives_the_final_figures(lenet_onnx, digits_eval, tmp_path):
    """--ray-resource NAME: every task runs on the node declaring NAME (here a local one-node Ray,
    on 127.0.0.1 only, declaring "board"), one at a time; its figures ship as measured there, the
    chosen one is not timed again here, and the bundle says where. A resource no node declares is
    refused before anything is built."""
    ray = pytest.importorskip("ray", reason="pip install 'edgeinfer[ray]' (in the dev extra)")
    from edgeinfer.core.errors import ConfigError
    from edgeinfer.pipelines.optimize import Budgets, optimize
    from edgeinfer.pipelines.optimize.executors import loopback_only

    loopback_only(ray)
    ray.init(resources={"board": 1}, include_dashboard=False, log_to_driver=False, num_cpus=2)
    try:
        report = optimize(
            str(lenet_onnx), tmp_path / "b", data=str(digits_eval), budgets=Budgets(max_drop=0.02), runs=5,
            use_cache=False, executor="ray", ray_resource="board",
        )  # fmt: skip
        assert report.chosen is not None and report.remote and "'board'" in report.remote
        measured = [c for c in report.candidates if c.measured]
        assert measured and all(c.measured_on and c.measured_on.startswith("board (ray node") for c in measured)
        chosen = next(c for c in report.candidates if c.name == report.chosen)
        assert chosen.measured_on and "alone" in chosen.measured_on  # not re-timed on this machine
        manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
        assert manifest["measured"]["measured_on"] == chosen.measured_on
        with pytest.raises(ConfigError, match="declares the resource 'phone'"):
            optimize(str(lenet_onnx), tmp_path / "c", data=str(digits_eval), executor="ray", ray_resource="phone")
        assert not (tmp_path / "c").exists()
    finally:
        ray.shutdown()


def test_candidates_follow_the_profiles_precisions_and_the_model():
    from dataclasses import replace

    from edgeinfer.devices import Precision, get_profile
    from edgeinfer.pipelines.optimize.onnx import candidate_recipes

    vnni = get_profile("x86-avx512-vnni")
    cnn = dict(candidate_recipes(vnni, None, has_calib=True, can_prune=True))
    assert {"fp32", "int8-dynamic", "int8-static", "pruned-25", "pruned-50"} <= set(cnn) and "fp16" not in cnn
    bert = dict(candidate_recipes(vnni, "bert", has_calib=True))
    assert "graph+int8-dynamic" in bert and not any("static" in n for n in bert)  # no QDQ for transformers here
    wide = replace(vnni, precisions=(Precision.FP32, Precision.INT8, Precision.INT4, Precision.FP16))
    names = dict(candidate_recipes(wide, "bert", has_calib=True))
    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.pipelines.quantize import device_quant_config

    ((step, cfg),) = names["int4-weight-only"]  # what `quantize --device` would build, written short
    assert step == "quantize-onnx" and OnnxQuantConfig.from_dict(cfg) == device_quant_config("int4", wide)
    assert set(cfg) <= {"method", "reduce_range"}  # nothing else differs from the defaults on x86
    assert names["graph+int4-weight-only"][0][0] == "optimize-graph" and names["fp16"]
    npu = dict(candidate_recipes(get_profile("snapdragon-npu"), None, has_calib=True))
    assert list(npu) == ["int8-static-qnn"] and npu["int8-static-qnn"][0][1]["recipe"] == "qnn"


def _verify_in_a_fresh_process(bundle, tmp_path) -> dict:
    """`edgeinfer verify BUNDLE --json` in a new interpreter, from a folder of its own: exit 0."""
    cwd = tmp_path / "device"
    cwd.mkdir(exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "edgeinfer", "verify", str(bundle), "--json"], cwd=cwd, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_a_device_that_is_not_here_is_never_timed_here(digits_eval, lenet_onnx, tmp_path, capsys):
    """jetson-orin runs TensorRT / CUDA, which this CPU-only machine lacks: the latency objective
    cannot choose, so optimize exits 1 before measuring, naming --objective size and each missing
    provider once, with the package to install; a latency budget for it is refused (exit 2)."""
    out = tmp_path / "orin"
    code, stdout, err = run_cli(
        capsys, "optimize", lenet_onnx, "--device", "jetson-orin", "--data", digits_eval, "--max-drop", "0.01",
        "--runs", "3", "-o", out, "--json", "--no-cache",
    )  # fmt: skip
    assert code == 1 and not out.exists() and stdout == ""
    line = " ".join(err.split())
    assert "jetson-orin is not here" in line and "--objective size" in line and "--executor ssh://HOST" in line
    assert line.count("TensorrtExecutionProvider") == 1 and line.count("CUDAExecutionProvider") == 1
    assert "pip install onnxruntime-gpu" in line and "candidate" in line
    code, _, err = run_cli(
        capsys, "optimize", lenet_onnx, "--device", "jetson-orin", "--data", digits_eval, "--objective", "size",
        "--max-latency-ms", "5", "-o", out,
    )  # fmt: skip
    assert code == 2 and "--max-latency-ms needs latency measured on jetson-orin" in " ".join(err.split())


def test_a_board_not_on_the_desk_gets_a_size_ranked_bundle_measured_here(digits_eval, lenet_onnx, tmp_path, capsys):
    """raspberry-pi-5 (XNNPACK, then the CPU) with --objective size: quality, size and memory are
    measured here on the CPU standing in for the board, latency is not (no target), the smallest
    candidate within --max-drop ships, and its bundle says so; verify there needs XNNPACK (named
    without a pip command for the onnxruntime that is installed), or --allow-fallback."""
    out = tmp_path / "pi"
    code, stdout, err = run_cli(
        capsys, "optimize", lenet_onnx, "--device", "raspberry-pi-5", "--data", digits_eval, "--max-drop", "0.02",
        "--objective", "size", "-o", out, "--json", "--no-cache",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    assert "stands in for raspberry-pi-5" in report["stand_in"] and "latency not measured" in report["stand_in"]
    measured = [c for c in report["candidates"] if c["drop"] is not None]
    assert measured and all(c["p50_ms"] is None and c["speedup_vs_fp32"] is None for c in measured)
    chosen = next(c for c in report["candidates"] if c["name"] == report["chosen"])
    assert chosen["met"] and chosen["drop"] <= 0.02 and chosen["memory_mb"] > 0
    assert chosen["size_bytes"] == min(c["size_bytes"] for c in report["candidates"] if c["met"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["providers"][0] == "XnnpackExecutionProvider" and manifest["measured"]["p50_ms"] is None
    assert "stands in for raspberry-pi-5" in manifest["measured"]["measured_on"]
    assert "not timed" in (out / "README.md").read_text()
    code, said, err = run_cli(capsys, "verify", out)
    line = " ".join((said + err).split())
    assert code == 1 and "XnnpackExecutionProvider" in line and "pip install onnxruntime " not in line + " "
    assert line.count("--allow-fallback") == 1
    code, stdout, _ = run_cli(capsys, "verify", out, "--allow-fallback", "--json")
    assert code == 0 and json.loads(stdout)["passed"]


def test_a_new_quantization_method_is_searched_with_no_other_edit(lenet_onnx, digits_eval, tmp_path, monkeypatch):
    """What one new file in compress/onnx_methods/ does on import: register a method with its
    precision and the candidates it offers. optimize then builds and measures it beside the others."""
    from dataclasses import replace

    from edgeinfer.compress import onnx_quant
    from edgeinfer.compress.onnx_methods.dynamic import dynamic
    from edgeinfer.devices import load_profile_file
    from edgeinfer.pipelines.optimize import optimize

    def seven_bit(job):  # a real method: dynamic INT8 with 7-bit weights, so its bytes are its own
        return dynamic(replace(job, config=replace(job.config, reduce_range=True)))

    monkeypatch.setenv("EDGEINFER_CACHE", str(tmp_path / "cache"))
    onnx_quant.register_method("seven-bit", precision="int8", search=(("int8-seven-bit", {"per_channel": False}),))(
        seven_bit
    )
    try:
        board = tmp_path / "board.toml"
        board.write_text('name = "board"\nproviders = ["cpu"]\nprecisions = ["int8"]\n')
        report = optimize(
            str(lenet_onnx), tmp_path / "bundle", data=str(digits_eval), profile=load_profile_file(board), runs=3,
            use_cache=False,
        )  # fmt: skip
    finally:
        onnx_quant._METHODS._entries.pop("seven-bit", None)
    by_name = {c.name: c for c in report.candidates}
    assert {"int8-dynamic", "int8-static", "int8-seven-bit"} <= set(by_name)
    new = by_name["int8-seven-bit"]
    assert new.steps == [("quantize-onnx", {"method": "seven-bit", "per_channel": False})]
    assert new.measured and new.p50_ms and new.p50_ms > 0 and new.sha256 != by_name["int8-dynamic"].sha256
    assert new.metrics.get("accuracy", 0) > 0.8  # built by the method and scored on the digits
