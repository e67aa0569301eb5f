"""`verify --arch arm64` against what can go wrong before the emulator runs: a bad --arch, a mirror
whose files are not Debian's (the signature check refuses them), a recipe naming a version that
is not one. The passing run on the demo bundle is in test_demo.py."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from tests.conftest import run_cli


@pytest.fixture
def bundle(lenet_onnx, digits_eval, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("arm") / "bundle"
    code, _, err = run_cli(
        capsys, "optimize", lenet_onnx, "--data", digits_eval, "--objective", "size", "--runs", "3", "-o", out
    )
    assert code == 0, err
    return out


def test_a_bad_arch_is_refused(bundle, capsys):
    code, _, err = run_cli(capsys, "verify", bundle, "--arch", "x86")
    assert code == 2 and "choose native" in err and "arm64" in err


def test_files_that_are_not_debians_are_refused(bundle, tmp_path, capsys, monkeypatch):
    """A mirror (here one this test serves on 127.0.0.1) whose InRelease carries no Debian archive
    signature: nothing it serves is used, one line, exit 2."""
    served = tmp_path / "mirror"
    for suite in ("trixie", "bookworm"):
        (served / "dists" / suite).mkdir(parents=True)
        (served / "dists" / suite / "InRelease").write_text("Origin: not Debian\nSHA256:\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("EDGEINFER_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("EDGEINFER_DEBIAN_MIRROR", f"http://127.0.0.1:{server.server_address[1]}")
        code, _, err = run_cli(capsys, "verify", bundle, "--arch", "arm64")
    finally:
        server.shutdown()
    assert code == 2 and "does not carry a valid archive signature" in " ".join(err.split())
    assert not list((tmp_path / "cache" / "emulation-arm64").rglob("*.deb"))


def test_a_recorded_version_that_is_not_one_is_not_passed_to_pip(bundle):
    """recipe.toml is the bundle author's: its onnxruntime version reaches `pip download` only as a
    version number; anything else falls back to this machine's onnxruntime."""
    import json

    from edgeinfer.core.io import sha256_file
    from edgeinfer.pipelines.deploy.verify import _recorded_onnxruntime, read_manifest

    assert _recorded_onnxruntime(bundle, read_manifest(bundle)) is not None
    recipe = bundle / "recipe.toml"
    text = recipe.read_text()
    recipe.write_text(text.replace('onnxruntime = "', 'onnxruntime = "1.0 --index-url http://evil/ #', 1))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["recipe.toml"] = {"size": recipe.stat().st_size, "sha256": sha256_file(recipe)}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert _recorded_onnxruntime(bundle, read_manifest(bundle)) is None
