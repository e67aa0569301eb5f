"""`edgeinfer verify`: the acceptance test of a deploy bundle on the device that will run it.

Every checksum in the manifest, the providers it prefers, the golden inputs' outputs within the
recorded tolerance, latency against the budget. A bundle (or its .tar.gz) from someone else is
untrusted input: paths that leave the bundle, links and special files are refused, sizes are
checked before anything is read or unpacked, nothing is unpickled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.errors import InputError, option
from edgeinfer.core.formats import read_json_object
from edgeinfer.core.io import sha256_file
from edgeinfer.pipelines.bundle import MANIFEST, MAX_MANIFEST_BYTES, SCHEMA


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class VerifyReport:
    bundle: str
    checks: list[Check] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)
    peak_memory_mb: float | None = None
    kind: str = "onnx"  # or "gguf": latency is then per generated token

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "passed": self.passed,
            "checks": [c.__dict__ for c in self.checks],
            "latency_ms": self.latency_ms,
            "providers": self.providers,
            "peak_memory_mb": self.peak_memory_mb,
            "kind": self.kind,
        }


MAX_ARCHIVE_BYTES = 64 << 30  # unpacked; a model bigger than this is not a bundle for a device


@contextlib.contextmanager
def opened(bundle: Path) -> Iterator[Path]:
    """A bundle folder as is, or a .tar.gz unpacked into a temporary folder, checked as untrusted:
    only regular files and folders, no absolute or escaping paths, a bounded unpacked size."""
    import tarfile
    import tempfile

    bundle = Path(bundle)
    if bundle.is_dir() or not bundle.name.endswith((".tar.gz", ".tgz")):
        yield bundle
        return
    if not bundle.is_file():
        raise InputError(f"bundle {bundle} does not exist")
    try:
        tar = tarfile.open(bundle, "r:gz")
    except (tarfile.TarError, OSError) as e:
        raise InputError(f"{bundle} is not a readable .tar.gz: {e}") from None
    with tar, tempfile.TemporaryDirectory(prefix="edgeinfer-bundle-") as tmp:
        total = 0
        for m in tar.getmembers():
            name = Path(m.name)
            if name.is_absolute() or ".." in name.parts:
                raise InputError(f"{bundle.name} holds {m.name!r}, a path outside the bundle; refusing it")
            if not (m.isfile() or m.isdir()):
                raise InputError(f"{bundle.name} holds {m.name!r}, a link or special file; refusing it")
            total += m.size
            if total > MAX_ARCHIVE_BYTES:
                raise InputError(f"{bundle.name} unpacks to more than {MAX_ARCHIVE_BYTES >> 30} GiB; refusing it")
        tar.extractall(tmp, filter="data")
        roots = [p for p in Path(tmp).iterdir()]
        yield roots[0] if len(roots) == 1 and roots[0].is_dir() else Path(tmp)


def read_manifest(bundle: Path) -> dict[str, Any]:
    """The manifest, checked as untrusted input: a JSON object of bounded size with safe paths."""
    path = Path(bundle) / MANIFEST
    if not Path(bundle).is_dir() or not path.is_file():
        raise InputError(f"{bundle} is not an edgeinfer bundle (no {MANIFEST}); make one with `edgeinfer optimize`")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InputError(f"{path} is {path.stat().st_size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}")
    manifest = read_json_object(path, "manifest", "the bundle is damaged; make it again with `edgeinfer optimize`")
    if (
        not isinstance(manifest, dict)
        or manifest.get("schema") != SCHEMA
        or not isinstance(manifest.get("files"), dict)
    ):
        raise InputError(f"{path} is not a schema-{SCHEMA} edgeinfer manifest")
    for name in [*manifest["files"], manifest.get("model", ""), manifest.get("golden", "")]:
        inside(bundle, str(name))
    if manifest.get("repack") not in (None, True, False):
        raise InputError(f"{path}: 'repack' is {manifest['repack']!r}; it must be true, false or absent")
    return manifest


def inside(bundle: Path, name: str) -> Path:
    """`bundle / name`, refused when `name` is absolute or escapes the bundle (`../x`, a symlink out)."""
    root = Path(bundle).resolve()
    target = (root / name).resolve()
    if not name or Path(name).is_absolute() or not target.is_relative_to(root):
        raise InputError(f"the manifest names {name!r}, a path outside the bundle; refusing the bundle")
    return target


def verify(
    bundle: Path, *, allow_fallback: bool = False, enforce_latency: bool = False, runs: int = 20
) -> VerifyReport:
    """The acceptance test of a bundle on this machine: checksums, providers, golden outputs, latency
    and peak memory (ONNX models, or GGUF LLMs on llama.cpp).

    Args:
        bundle: the bundle folder, or its .tar.gz (unpacked into a temporary folder, checked first).
        allow_fallback: accept running on the CPU when a provider the manifest prefers is missing.
        enforce_latency: fail when the p50 latency or the peak memory is above the bundle's budget.
        runs: timed runs of the golden batch.
    """
    with opened(Path(bundle)) as folder:
        report = _verify(folder, allow_fallback, enforce_latency, runs)
    report.bundle = str(bundle)
    return report


def _verify(bundle: Path, allow_fallback: bool, enforce_latency: bool, runs: int) -> VerifyReport:
    from edgeinfer.core.errors import ProviderUnavailableError
    from edgeinfer.core.formats import load_npz
    from edgeinfer.core.measure import interleaved, percentiles
    from edgeinfer.core.providers import Provider
    from edgeinfer.exporters.validate import compare_arrays
    from edgeinfer.pipelines.measurements import onnx_peak_memory_mb
    from edgeinfer.runtime.ort import OrtRunner

    manifest = read_manifest(bundle)
    report = VerifyReport(str(bundle))
    bad = []
    for name, spec in manifest["files"].items():
        path = inside(bundle, name)
        if not path.is_file():
            bad.append(f"{name} is missing")
        elif path.stat().st_size != spec.get("size"):
            bad.append(f"{name} is {path.stat().st_size} bytes, the manifest says {spec.get('size')}")
        elif sha256_file(path) != spec.get("sha256"):
            bad.append(f"{name} does not match its sha256")
    report.checks.append(Check("checksums", not bad, "; ".join(bad) or f"{len(manifest['files'])} files match"))
    if bad:
        return report
    if manifest.get("format") == "gguf":
        return _verify_gguf(bundle, manifest, report, allow_fallback, enforce_latency, runs)
    try:
        providers = [Provider.parse(p) for p in manifest.get("providers", ["cpu"])]
        runner = OrtRunner(
            inside(bundle, manifest["model"]),
            providers=providers,
            allow_fallback=allow_fallback,
            threads=manifest.get("threads"),
            profile_first_run=False,
        )
    except ProviderUnavailableError as e:
        report.checks.append(Check("providers", False, f"{e} (or pass {option('allow_fallback', True)})"))
        return report
    report.providers = runner.report.used
    report.checks.append(Check("providers", True, ", ".join(runner.report.used)))
    golden = load_npz(inside(bundle, manifest["golden"]))
    feeds = {k: v for k, v in golden.items() if not k.startswith("expected:")}
    got = runner.run(feeds)
    tol = manifest["tolerance"]
    problems = []
    for key, ref in golden.items():
        if not key.startswith("expected:"):
            continue
        out = key.split(":", 1)[1]
        figures = compare_arrays(ref, np.asarray(got[out]))
        cos, diff = figures["cosine"], figures["max_abs_diff"]
        if cos < tol["min_cosine"] or diff > tol["max_abs_diff"]:
            problems.append(
                f"{out}: cosine {cos:.6f} (at least {tol['min_cosine']:.6f}), max abs diff {diff:.3g} "
                f"(at most {tol['max_abs_diff']:.3g})"
            )
    report.checks.append(Check("golden outputs", not problems, "; ".join(problems) or "within tolerance"))
    times = interleaved({"model": lambda: runner.session.run(None, feeds)}, runs=runs, warmup=3)
    report.latency_ms = percentiles(times["model"])
    _check_budgets(report, manifest, enforce_latency, "")
    report.peak_memory_mb = onnx_peak_memory_mb(
        inside(bundle, manifest["model"]), inside(bundle, manifest["golden"]), manifest.get("providers", ["cpu"]),
        manifest.get("threads"),
    )  # fmt: skip
    _check_memory(report, manifest, enforce_latency)
    return report


def _check_budgets(report: VerifyReport, manifest: dict[str, Any], enforce: bool, unit: str) -> None:
    budget = manifest.get("budgets", {}).get("max_latency_ms")
    if budget is not None:
        ok = report.latency_ms["p50"] <= budget
        detail = f"p50 {report.latency_ms['p50']:.3f} ms{unit}, budget {budget} ms"
        report.checks.append(Check("latency", ok or not enforce, detail + ("" if ok else " (over budget)")))


def _check_memory(report: VerifyReport, manifest: dict[str, Any], enforce: bool) -> None:
    budget = manifest.get("budgets", {}).get("max_memory_mb")
    if budget is not None and report.peak_memory_mb is not None:
        ok = report.peak_memory_mb <= budget
        detail = f"peak {report.peak_memory_mb:.0f} MiB in a fresh process, budget {budget} MiB"
        report.checks.append(Check("memory", ok or not enforce, detail + ("" if ok else " (over budget)")))


def _verify_gguf(
    bundle: Path, manifest: dict[str, Any], report: VerifyReport, allow_fallback: bool, enforce: bool, runs: int
) -> VerifyReport:
    """The LLM half: llama.cpp loads the model as the manifest says, its log-probs on the golden
    tokens stay within the recorded KL and top-1 tolerance of the baseline's, speed and memory."""
    from edgeinfer.core.errors import ProviderUnavailableError
    from edgeinfer.core.formats import load_npz
    from edgeinfer.pipelines.bundle_llm import golden_agreement
    from edgeinfer.pipelines.measurements import gguf_peak_memory_mb
    from edgeinfer.runtime.llama import LlamaRunner, LlamaSettings

    report.kind = "gguf"
    model = inside(bundle, manifest["model"])
    golden = load_npz(inside(bundle, manifest["golden"]))
    tokens = [int(t) for t in np.asarray(golden.get("tokens", []), dtype=np.int64)]
    expected = golden.get("expected_log_probs")
    if len(tokens) < 2 or expected is None or np.asarray(expected).shape[0] != len(tokens) - 1:
        raise InputError(f"{manifest['golden']} holds no golden tokens with their log-probs; the bundle is damaged")
    settings = LlamaSettings(
        n_ctx=max(64, len(tokens)),
        threads=manifest.get("threads"),
        n_gpu_layers=int(manifest.get("n_gpu_layers", 0)),
        allow_fallback=allow_fallback,
        extra_buffers=manifest.get("repack"),
    )
    try:
        runner = LlamaRunner(model, settings, logits_all=True)
    except ProviderUnavailableError as e:
        report.checks.append(Check("providers", False, str(e)))
        return report
    report.providers = runner.report.used
    report.checks.append(Check("providers", True, ", ".join(runner.report.used)))
    got = golden_agreement(np.asarray(expected), runner.sequence_log_probs(tokens)[:-1])
    tol = manifest["tolerance"]
    ok = got["kl_mean"] <= tol["max_kld"] and got["top1_agreement"] >= tol["min_top1"]
    detail = (
        f"KL {got['kl_mean']:.4f} (at most {tol['max_kld']:.4f}), top-1 {got['top1_agreement']:.3f} "
        f"(at least {tol['min_top1']:.3f}) on {len(tokens)} golden tokens"
    )
    report.checks.append(Check("golden outputs", ok, detail if not ok else "within tolerance: " + detail))
    speed = runner.bench(32, 16, max(1, min(runs, 5)))
    ms = [1000.0 / t for t in speed["tg_runs"]]
    report.latency_ms = {"p50": float(np.median(ms)), "min": float(min(ms))}
    _check_budgets(report, manifest, enforce, " per generated token")
    runner.close()
    report.peak_memory_mb = gguf_peak_memory_mb(model, int(manifest.get("n_ctx", 2048)), manifest.get("threads"))
    _check_memory(report, manifest, enforce)
    return report
