"""Deploy bundles: what `optimize` writes for a device, and `verify`, the acceptance test run there.

A bundle is a folder: model.onnx (+ its sidecar), tokenizer files when the model reads text,
golden.npz (a few real inputs and the outputs the FP32 model gives for them), manifest.json (every
file's size and sha256, providers in preference order, inputs and outputs, budgets, tolerances,
the measured figures), recipe.toml (the passes that made the model, replayable), a standalone
run.py (onnxruntime and numpy only) and a README for the device's operator. A bundle from someone
else is untrusted: every path in the manifest must stay inside the folder, sizes are checked
before anything is read, and nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.errors import ConfigError, InputError, option
from edgeinfer.core.hf_folder import TOKENIZER_FILES as HF_TOKENIZER_FILES
from edgeinfer.core.io import sha256_file

MANIFEST = "manifest.json"
SCHEMA = 1
MAX_MANIFEST_BYTES = 1 << 20
GOLDEN_SAMPLES = 4
# Copied into a bundle: the files transformers builds the tokenizer from, and its settings.
TOKENIZER_FILES = (*HF_TOKENIZER_FILES, "tokenizer_config.json", "special_tokens_map.json", "merges.txt")


def sourcesha256_file(source: str) -> str | None:
    """sha256 of what `optimize` started from: a file, or a folder's files (names and bytes, sorted)."""
    path = Path(source)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0" + sha256_file(f).encode())
        return h.hexdigest()
    return None  # a factory: code, named by its spec


def check_bundle_output(bundle: Path, force: bool) -> None:
    """A bundle folder may replace only an earlier bundle (or an empty folder), and only with force."""
    from edgeinfer.core.errors import OutputExistsError

    bundle = Path(bundle)
    if bundle.exists() and not bundle.is_dir():
        raise OutputExistsError(f"{bundle} is a file; a bundle is a folder: choose another path")
    if bundle.is_dir() and any(bundle.iterdir()):
        if not force:
            raise OutputExistsError(f"bundle folder {bundle} exists; pass {option('force', True)} to replace it")
        if not (bundle / MANIFEST).is_file():
            raise OutputExistsError(f"{bundle} holds files but is no edgeinfer bundle; refusing to replace it")


@contextlib.contextmanager
def bundle_dir(bundle: Path) -> Iterator[Path]:
    """A sibling temporary folder that replaces `bundle` whole once the block succeeds."""
    from edgeinfer.core.io import clean_stale_temporaries

    bundle = Path(bundle)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(bundle.parent)  # what a killed run left
    tmp = bundle.parent / f".{bundle.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = bundle.parent / f".{bundle.name}.old-{os.getpid()}"
        if bundle.exists():
            bundle.rename(old)
        tmp.rename(bundle)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bundle(
    bundle: Path,
    model: Path,
    baseline: Path,
    *,
    recipe: list[tuple[str, dict[str, Any]]],
    source: str,
    data: str,
    profile,
    report,
    candidate,
    force: bool = False,
    golden_on_cpu: bool = False,
) -> None:
    """Write the bundle folder atomically (it appears whole, or not at all). `golden_on_cpu`: the
    device's providers are not here, so the expected outputs' tolerance is taken on the CPU."""
    from edgeinfer import __version__
    from edgeinfer.core.artifact import copy_with_sidecar, load_artifact
    from edgeinfer.core.data import load_batches
    from edgeinfer.exporters.validate import compare_arrays
    from edgeinfer.pipelines.target import engine_of, onnx_runner, onnx_target

    art = load_artifact(model)
    base = onnx_runner(baseline, profile_first_run=False)
    # The chosen model on the device's providers (or OpenVINO's device), as verify will run it (an
    # NPU rounds differently); on this CPU when the device is not here.
    where = engine_of(candidate.steps, onnx_target(profile))
    cand = onnx_runner(model, stand_in_for(where) if golden_on_cpu else where, profile_first_run=False)
    first = base.inputs[0].shape[0] if base.inputs and base.inputs[0].shape else None
    samples = max(GOLDEN_SAMPLES, first if isinstance(first, int) else 0)  # a fixed batch is the minimum
    batches = load_batches(data, base.inputs, samples, art.meta.get("tokenizer"), samples)
    golden_in = {k: v for k, v in batches.batches[0].items() if k in {i.name for i in base.inputs}}
    expected = base.run(golden_in)
    got = cand.run(golden_in)
    # The chosen model's own distance from FP32 on the goldens, with headroom for another CPU's
    # rounding: a tampered or broken model lands far outside it.
    figures = [compare_arrays(ref, got[name]) for name, ref in expected.items()]
    tolerance = {
        "min_cosine": min(min(f["cosine"] for f in figures) - 1e-3, 0.9999),
        "max_abs_diff": max(max(f["max_abs_diff"] for f in figures) * 2.0, 1e-4),
    }
    check_bundle_output(bundle, force)
    with bundle_dir(bundle) as out:
        copy_with_sidecar(model, out / "model.onnx")
        tokenizer = art.meta.get("tokenizer")
        if tokenizer and Path(tokenizer).is_dir():
            (out / "tokenizer").mkdir()
            for name in TOKENIZER_FILES:
                if (Path(tokenizer) / name).is_file():
                    shutil.copyfile(Path(tokenizer) / name, out / "tokenizer" / name)
        arrays = {**golden_in, **{f"expected:{k}": v for k, v in expected.items()}}
        np.savez(out / "golden.npz", **arrays)  # pyright: ignore[reportArgumentType]  # names are keys, not options
        recipe_doc = write_recipe(out, source, recipe, model, report, candidate)
        (out / "run.py").write_text(RUN_OPENVINO_PY if where.openvino else RUN_PY)
        (out / "README.md").write_text(_readme(report, candidate, where))
        manifest = {
            "schema": SCHEMA,
            "model": "model.onnx",
            "golden": "golden.npz",
            "device": report.device,
            "providers": [p.value for p in profile.providers] if profile is not None else ["cpu"],
            "threads": getattr(profile, "threads", None),
            "inputs": [{"name": i.name, "type": i.type, "shape": [str(d) for d in i.shape]} for i in cand.inputs],
            "outputs": list(expected),
            "budgets": report.to_dict()["budgets"],
            "tolerance": tolerance,
            "measured": recipe_doc["measured"],
            "candidate": candidate.name,
            "edgeinfer_version": __version__,
            "runtime": where.runtime,
        }
        if where.openvino:
            manifest["openvino"] = {"device": where.ov_device, "precision": where.precision}
        write_manifest(out, manifest)


def stand_in_for(where):
    """What runs a model here when its device is not: ONNX Runtime's CPU, or OpenVINO's CPU in
    the same precision where this CPU has it (else FP32, said)."""
    from dataclasses import replace

    from edgeinfer.pipelines.target import OnnxTarget
    from edgeinfer.runtime.openvino import PRECISIONS, device_capabilities

    if not where.openvino:
        return OnnxTarget()
    precision = where.precision
    if precision is not None and PRECISIONS[precision] not in device_capabilities("CPU"):
        precision = "f32"
    return replace(where, threads=None, ov_device="CPU", precision=precision)


def write_recipe(out: Path, source: str, recipe, model: Path, report, candidate) -> dict[str, Any]:
    """recipe.toml: the source's sha256, every pass with its config, the versions, the figures."""
    import tomli_w

    from edgeinfer import __version__

    doc = {
        "source": {"spec": source, "sha256": sourcesha256_file(source) or ""},
        "steps": [{"pass": p, "config": c} for p, c in recipe],
        "versions": _versions(__version__),
        "measured": {
            k: v
            for k, v in candidate.to_dict().items()
            if k in ("metrics", "drop", "p50_ms", "size_bytes", "memory_mb")
        }
        | {"measured_on": report.stand_in or candidate.to_dict()["measured_on"]},
        "device": report.device,
        "result": {"sha256": sha256_file(model)},
    }
    (out / "recipe.toml").write_text(tomli_w.dumps(_toml_safe(doc)))
    return doc


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """manifest.json with every file already in `out`: size and sha256."""
    files = {}
    for f in sorted(p for p in out.rglob("*") if p.is_file()):
        files[f.relative_to(out).as_posix()] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
    (out / MANIFEST).write_text(json.dumps({**manifest, "files": files}, indent=2) + "\n")


def read_recipe(path: Path, source: str) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """The steps of a bundle's recipe.toml and what it recorded, checked against `source`."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"recipe {path} does not exist")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InputError(f"{path} is {path.stat().st_size} bytes; a recipe is at most {MAX_MANIFEST_BYTES}")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"{path} is not valid TOML: {e}") from None
    steps = doc.get("steps")
    if not isinstance(steps, list) or not all(
        isinstance(s, dict) and isinstance(s.get("pass"), str) and isinstance(s.get("config", {}), dict) for s in steps
    ):
        raise InputError(f"{path} is not an edgeinfer recipe (steps = [{{pass, config}}, ...])")
    recorded = str(doc.get("source", {}).get("sha256") or "")
    actual = sourcesha256_file(source)
    if recorded and actual and recorded != actual:
        raise ConfigError(
            f"{path.name} was made from another source (sha256 {recorded[:12]}...), not {source} "
            f"({actual[:12]}...); replay it on the source it records"
        )
    return [(s["pass"], s.get("config", {})) for s in steps], doc


def _versions(edgeinfer_version: str) -> dict[str, str]:
    out = {"edgeinfer": edgeinfer_version}
    for mod in ("onnxruntime", "torch", "onnx", "llama_cpp", "openvino"):
        try:
            out[mod] = __import__(mod).__version__.split("-")[0]
        except ImportError:
            pass
    return out


def _toml_safe(value):
    """TOML has no null: drop None values."""
    if isinstance(value, dict):
        return {k: _toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_safe(v) for v in value if v is not None]
    return value


def _readme(report, candidate, where) -> str:
    figures = f"a metric drop of {candidate.drop:.4f} against FP32, and {candidate.size_bytes / 2**20:.2f} MiB"
    if candidate.p50_ms is not None:
        measured = f"it measured p50 {candidate.p50_ms:.3f} ms on the eval batch, {figures}."
    else:  # the device was not where optimize ran
        measured = (
            f"it measured {figures}; it was not timed: {report.stand_in}. `edgeinfer verify .` on the device times it."
        )
    runtime = "openvino" if where.openvino else "onnxruntime"
    runs_on = f" It runs on {where.describe()}." if where.openvino else ""
    return f"""# edgeinfer bundle for {report.device}

`model.onnx` is the `{candidate.name}` candidate, chosen by `edgeinfer optimize` (objective:
{report.objective}); {measured}{runs_on}

On the device:

    edgeinfer verify .          # checksums, providers, golden outputs, latency: exit 0 / 1 / 2
    python run.py inputs.npz    # needs only {runtime} and numpy

`manifest.json` lists every file with its sha256, the providers in preference order, the inputs
and outputs, the budgets and the tolerances; `recipe.toml` the passes that made the model.
"""


RUN_PY = '''"""Run this bundle's model on an .npz of inputs (named like the model's inputs); needs only
onnxruntime and numpy.

    python run.py inputs.npz [--out outputs.npz]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
             "coreml": "CoreMLExecutionProvider", "qnn": "QNNExecutionProvider", "openvino": "OpenVINOExecutionProvider",
             "directml": "DmlExecutionProvider", "xnnpack": "XnnpackExecutionProvider"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    manifest = json.loads((HERE / "manifest.json").read_text())
    wanted = [PROVIDERS.get(p, p) for p in manifest["providers"]]
    available = ort.get_available_providers()
    providers = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(HERE / manifest["model"]), providers=providers)
    names = {i.name for i in session.get_inputs()}
    with np.load(args.inputs, allow_pickle=False) as data:
        feeds = {k: data[k] for k in data.files if k in names}
    missing = sorted(names - set(feeds))
    if missing:
        raise SystemExit(f"{args.inputs} lacks the input(s) {', '.join(missing)}")
    outputs = session.run(None, feeds)
    out_names = [o.name for o in session.get_outputs()]
    print(f"providers: {', '.join(session.get_providers())}")
    for name, value in zip(out_names, outputs):
        print(f"{name}: shape {list(value.shape)}, first values {np.asarray(value).ravel()[:5].tolist()}")
    if args.out:
        np.savez(args.out, **dict(zip(out_names, outputs)))


if __name__ == "__main__":
    main()
'''


RUN_OPENVINO_PY = '''"""Run this bundle's model on OpenVINO, on an .npz of inputs (named like the model's inputs);
needs only openvino and numpy.

    python run.py inputs.npz [--out outputs.npz]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import openvino as ov

HERE = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    manifest = json.loads((HERE / "manifest.json").read_text())
    where = manifest["openvino"]
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if where.get("precision"):
        config["INFERENCE_PRECISION_HINT"] = where["precision"]
    if manifest.get("threads") and where["device"] == "CPU":
        config["INFERENCE_NUM_THREADS"] = manifest["threads"]
    compiled = ov.Core().compile_model(str(HERE / manifest["model"]), where["device"], config)
    names = {port.get_any_name() for port in compiled.inputs}
    with np.load(args.inputs, allow_pickle=False) as data:
        feeds = {k: data[k] for k in data.files if k in names}
    missing = sorted(names - set(feeds))
    if missing:
        raise SystemExit(f"{args.inputs} lacks the input(s) {', '.join(missing)}")
    result = compiled.create_infer_request().infer(feeds)
    outputs = {port.get_any_name(): np.array(result[i]) for i, port in enumerate(compiled.outputs)}
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    print(f"runtime: OpenVINO {ov.__version__.split('-')[0]}, {where['device']}, {precision}")
    for name, value in outputs.items():
        print(f"{name}: shape {list(value.shape)}, first values {value.ravel()[:5].tolist()}")
    if args.out:
        np.savez(args.out, **outputs)


if __name__ == "__main__":
    main()
'''


def write_archive(bundle: Path, force: bool = False) -> Path:
    """`BUNDLE.tar.gz` beside the bundle folder, its files under one top-level folder; written atomically."""
    import tarfile

    from edgeinfer.core.io import atomic_path, check_output

    bundle = Path(bundle)
    archive = bundle.with_name(bundle.name + ".tar.gz")
    check_output(archive, [], force)
    with atomic_path(archive, overwrite=force) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for f in sorted(p for p in bundle.rglob("*") if p.is_file()):
                tar.add(f, arcname=f"{bundle.name}/{f.relative_to(bundle).as_posix()}", recursive=False)
    return archive
