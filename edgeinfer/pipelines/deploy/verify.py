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
from edgeinfer.pipelines.deploy.bundle import MANIFEST, MAX_MANIFEST_BYTES, SCHEMA
from edgeinfer.pipelines.deploy.manifest import LlmTolerance, Manifest, OnnxTolerance

MAX_GOLDEN_BYTES = 512 << 20  # a few samples and their outputs, or a few hundred tokens' log-probs


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
    machine: str | None = None  # set when the run was not on this machine's own CPU (an emulated aarch64)
    notes: list[str] = field(default_factory=list)  # what was not checked, and why

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
            "machine": self.machine,
            "notes": self.notes,
        }


MAX_ARCHIVE_BYTES = 64 << 30  # unpacked; a model bigger than this is not a bundle for a device


@contextlib.contextmanager
def opened(bundle: Path) -> Iterator[Path]:
    """A bundle folder as is, or a .tar.gz unpacked into a temporary folder, checked as untrusted:
    only regular files and folders, no absolute or escaping paths, a bounded unpacked size."""
    import tarfile

    from edgeinfer.core.io import scratch_dir

    bundle = Path(bundle)
    if bundle.is_dir() or not bundle.name.endswith((".tar.gz", ".tgz")):
        yield bundle
        return
    if not bundle.is_file():
        raise InputError(f"bundle {bundle} does not exist")
    import shutil
    import zlib

    unreadable = (tarfile.TarError, OSError, EOFError, zlib.error)
    try:
        tar = tarfile.open(bundle, "r:gz")
    except unreadable as e:
        raise InputError(f"{bundle} is not a readable .tar.gz: {e or type(e).__name__}") from None
    with tar, scratch_dir("bundle") as tmp:
        total = 0
        try:
            members = tar.getmembers()
        except unreadable as e:  # a truncated archive: EOFError, which click would call an interrupt
            raise InputError(f"{bundle} is a damaged .tar.gz ({e or type(e).__name__}); copy it again") from None
        for m in members:
            name = Path(m.name)
            if name.is_absolute() or ".." in name.parts:
                raise InputError(f"{bundle.name} holds {m.name!r}, a path outside the bundle; refusing it")
            if not (m.isfile() or m.isdir()):
                raise InputError(f"{bundle.name} holds {m.name!r}, a link or special file; refusing it")
            total += m.size
            if total > MAX_ARCHIVE_BYTES:
                raise InputError(f"{bundle.name} unpacks to more than {MAX_ARCHIVE_BYTES >> 30} GiB; refusing it")
        free = shutil.disk_usage(tmp).free
        if total > 0.9 * free:
            raise InputError(
                f"{bundle.name} unpacks to {total / 2**20:,.0f} MiB; the temporary folder {tmp.parent} has "
                f"{free / 2**20:,.0f} MiB free (set TMPDIR to a larger disk, or unpack it yourself and verify the folder)"
            )
        try:
            tar.extractall(tmp, filter="data")
        except unreadable as e:
            raise InputError(
                f"{bundle} could not be unpacked ({e or type(e).__name__}); copy it again or free space"
            ) from None
        roots = [p for p in Path(tmp).iterdir()]
        yield roots[0] if len(roots) == 1 and roots[0].is_dir() else Path(tmp)


def read_manifest(bundle: Path) -> Manifest:
    """The manifest, checked as untrusted input: a regular file of bounded size inside the bundle,
    JSON that fits the Manifest schema, with paths that stay in the bundle."""
    path = Path(bundle) / MANIFEST
    if not Path(bundle).is_dir() or not (path.is_file() or path.is_symlink()):
        raise InputError(f"{bundle} is not an edgeinfer bundle (no {MANIFEST}); make one with `edgeinfer optimize`")
    if path.is_symlink() or not path.is_file():
        raise InputError(f"{path} is a link; a bundle's files are regular files. Refusing the bundle")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InputError(f"{path} is {path.stat().st_size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}")
    data = read_json_object(path, "manifest", "the bundle is damaged; make it again with `edgeinfer optimize`")
    if data.get("schema") != SCHEMA:
        raise InputError(f"{path} is not a schema-{SCHEMA} edgeinfer manifest")
    manifest = Manifest.parse(data, MANIFEST)
    for name in [*manifest.files, manifest.model, manifest.golden]:
        inside(bundle, name)
    return manifest


def unlisted_files(bundle: Path, manifest: Manifest) -> list[str]:
    """Files in the bundle the manifest does not hash, and links or special files (refused)."""
    root = Path(bundle)
    extra = []
    for entry in sorted(root.rglob("*")):
        rel = entry.relative_to(root).as_posix()
        if entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
            raise InputError(f"the bundle holds {rel!r}, a link or special file; refusing the bundle")
        if entry.is_file() and rel != MANIFEST and rel not in manifest.files:
            extra.append(rel)
    return extra


def inside(bundle: Path, name: str) -> Path:
    """`bundle / name`, refused when `name` is absolute or escapes the bundle (`../x`, a symlink out)."""
    root = Path(bundle).resolve()
    target = (root / name).resolve()
    if not name or Path(name).is_absolute() or not target.is_relative_to(root):
        raise InputError(f"the manifest names {name!r}, a path outside the bundle; refusing the bundle")
    return target


def verify(
    bundle: Path,
    *,
    allow_fallback: bool = False,
    enforce_latency: bool = False,
    runs: int = 20,
    arch: str = "native",
    progress=None,
) -> VerifyReport:
    """The acceptance test of a bundle on this machine: checksums, providers, golden outputs, latency
    and peak memory (ONNX models, or GGUF LLMs on llama.cpp).

    Args:
        bundle: the bundle folder, or its .tar.gz (unpacked into a temporary folder, checked first).
        allow_fallback: accept running on the CPU when a provider the manifest prefers is missing.
        enforce_latency: fail when the p50 latency or the peak memory is above the bundle's budget.
        runs: timed runs of the golden batch.
        arch: "native" (this machine), or "arm64": the golden outputs on an emulated ARM64 CPU
            (deploy/emulate.py: QEMU user mode, fetched once into the cache); latency is the emulator's.
    """
    from edgeinfer.core.measure import apply_measurement_env
    from edgeinfer.pipelines.deploy.emulate import check_arch

    apply_measurement_env()  # before torch or llama.cpp loads: OpenMP reads it once
    check_arch(arch)
    with opened(Path(bundle)) as folder:
        report = _verify(folder, allow_fallback, enforce_latency, runs, arch, progress)
    report.bundle = str(bundle)
    return report


def _verify(
    bundle: Path, allow_fallback: bool, enforce_latency: bool, runs: int, arch: str = "native", progress=None
) -> VerifyReport:
    from edgeinfer.core.errors import ProviderUnavailableError
    from edgeinfer.core.formats import load_npz
    from edgeinfer.core.measure import interleaved, percentiles
    from edgeinfer.core.providers import Provider
    from edgeinfer.exporters.validate import compare_arrays
    from edgeinfer.pipelines.optimize.measurements import onnx_peak_memory_mb
    from edgeinfer.pipelines.target import OnnxTarget, onnx_runner

    manifest = read_manifest(bundle)
    report = VerifyReport(str(bundle))
    bad = [f"{name} is not listed in the manifest" for name in unlisted_files(bundle, manifest)]
    for name, spec in manifest.files.items():
        path = inside(bundle, name)
        if not path.is_file():
            bad.append(f"{name} is missing")
        elif path.stat().st_size != spec.size:
            bad.append(f"{name} is {path.stat().st_size} bytes, the manifest says {spec.size}")
        elif sha256_file(path) != spec.sha256:
            bad.append(f"{name} does not match its sha256")
    report.checks.append(Check("checksums", not bad, "; ".join(bad) or f"{len(manifest.files)} files match"))
    if bad:
        return report
    if arch == "arm64":
        return _verify_emulated(bundle, manifest, report, runs, progress)
    if manifest.format == "gguf":
        return _verify_gguf(bundle, manifest, report, allow_fallback, enforce_latency, runs)
    try:
        if manifest.openvino is not None:
            ov = manifest.openvino
            where = OnnxTarget(None, manifest.threads, "openvino", ov.device, ov.precision)
        else:
            where = OnnxTarget([Provider.parse(p) for p in manifest.providers], manifest.threads)
        model = inside(bundle, manifest.model)
        runner = onnx_runner(model, where, allow_fallback=allow_fallback, profile_first_run=False)
    except ProviderUnavailableError as e:
        said = str(e) if "allow" in str(e) else f"{e} (or pass {option('allow_fallback', True)})"
        report.checks.append(Check("providers", False, said))
        return report
    report.providers = runner.report.used
    report.checks.append(Check("providers", True, ", ".join(runner.report.used)))
    golden = load_npz(inside(bundle, manifest.golden), "golden file", max_bytes=MAX_GOLDEN_BYTES)
    feeds = golden_feeds(golden, runner, manifest.golden)
    got = runner.run(feeds)
    tol = manifest.tolerance
    assert isinstance(tol, OnnxTolerance)  # Manifest.check pairs the tolerance with the format
    problems, compared = [], 0
    for key, ref in golden.items():
        if not key.startswith("expected:"):
            continue
        out = key.split(":", 1)[1]
        if out not in got:
            raise InputError(
                f"{manifest.golden} expects an output {out!r} the model does not have; the bundle is damaged"
            )
        if np.asarray(ref).shape != np.asarray(got[out]).shape:
            problems.append(f"{out}: shape {np.asarray(got[out]).shape}, golden {np.asarray(ref).shape}")
            continue
        figures = compare_arrays(ref, np.asarray(got[out]))
        cos, diff = figures["cosine"], figures["max_abs_diff"]
        compared += 1
        if not (cos >= tol.min_cosine and diff <= tol.max_abs_diff):  # NaN fails too
            problems.append(
                f"{out}: cosine {cos:.6f} (at least {tol.min_cosine:.6f}), max abs diff {diff:.3g} "
                f"(at most {tol.max_abs_diff:.3g})"
            )
    if not compared and not problems:
        problems.append(f"{manifest.golden} holds no expected outputs: nothing was compared")
    report.checks.append(
        Check("golden outputs", not problems, "; ".join(problems) or f"{compared} outputs within tolerance")
    )
    times = interleaved({"model": runner.timer(feeds)}, runs=runs, warmup=3)
    report.latency_ms = percentiles(times["model"])
    _check_budgets(report, manifest, enforce_latency, "")
    report.peak_memory_mb = onnx_peak_memory_mb(
        inside(bundle, manifest.model), inside(bundle, manifest.golden), manifest.providers, manifest.threads,
        where.openvino_options(),
    )  # fmt: skip
    _check_memory(report, manifest, enforce_latency)
    return report


def _verify_emulated(bundle: Path, manifest: Manifest, report: VerifyReport, runs: int, progress) -> VerifyReport:
    """The golden check on an emulated ARM64 CPU, with the onnxruntime version the bundle was made with."""
    import onnxruntime

    from edgeinfer.pipelines.deploy import emulate

    if manifest.format == "gguf":
        report.notes.append(
            "not run on an emulated ARM64 CPU: a GGUF bundle runs on llama-cpp-python, which has no aarch64 "
            "wheel; on the board, `pip install llama-cpp-python` builds it from source (a C++ compiler and "
            "cmake; minutes), then `edgeinfer verify` there runs this check"
        )
        return report
    if manifest.runtime == "openvino":
        report.notes.append(
            "not run on an emulated ARM64 CPU: the emulation kit carries onnxruntime, and this bundle runs on "
            "OpenVINO (which has aarch64 wheels: `pip install openvino` on the board, then `edgeinfer verify` there)"
        )
        return report
    version = _recorded_onnxruntime(bundle, manifest) or onnxruntime.__version__
    kit = emulate.kit(version, progress)
    if progress is not None:
        progress.stage(f"running the goldens on an emulated aarch64 CPU ({kit.describe})")
    result = emulate.run_emulated(kit, bundle, manifest, runs)
    report.machine = f"{result.get('machine', '?')}, emulated ({kit.describe})"
    report.providers = [str(p) for p in result.get("providers", [])]
    wanted = ", ".join(manifest.providers)
    report.checks.append(Check("providers", True, f"{', '.join(report.providers)} (emulated; the device: {wanted})"))
    report.checks.append(Check("golden outputs", bool(result["passed"]), str(result.get("detail", ""))[:500]))
    report.latency_ms = {k: float(v) for k, v in dict(result.get("latency_ms", {})).items()}
    report.notes.append("latency is the emulator's: emulated, not comparable with a board's; peak memory not measured")
    return report


def _recorded_onnxruntime(bundle: Path, manifest: Manifest) -> str | None:
    """The onnxruntime version recipe.toml records (a checksummed file of the bundle), if any."""
    import re
    import tomllib

    if "recipe.toml" not in manifest.files:
        return None
    path = inside(bundle, "recipe.toml")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        return None
    try:
        version = tomllib.loads(path.read_text(encoding="utf-8")).get("versions", {}).get("onnxruntime")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
        return None
    return version if isinstance(version, str) and re.fullmatch(r"[0-9]+(\.[0-9]+){1,3}", version) else None


def _check_budgets(report: VerifyReport, manifest: Manifest, enforce: bool, unit: str) -> None:
    budget = manifest.budgets.max_latency_ms
    if budget is not None:
        ok = report.latency_ms["p50"] <= budget
        detail = f"p50 {report.latency_ms['p50']:.3f} ms{unit}, budget {budget} ms"
        report.checks.append(Check("latency", ok or not enforce, detail + ("" if ok else " (over budget)")))


def _check_memory(report: VerifyReport, manifest: Manifest, enforce: bool) -> None:
    budget = manifest.budgets.max_memory_mb
    if budget is not None and report.peak_memory_mb is not None:
        ok = report.peak_memory_mb <= budget
        detail = f"peak {report.peak_memory_mb:.0f} MiB in a fresh process, budget {budget} MiB"
        report.checks.append(Check("memory", ok or not enforce, detail + ("" if ok else " (over budget)")))


def _verify_gguf(
    bundle: Path, manifest: Manifest, report: VerifyReport, allow_fallback: bool, enforce: bool, runs: int
) -> VerifyReport:
    """The LLM half: llama.cpp loads the model as the manifest says, its log-probs on the golden
    tokens stay within the recorded KL and top-1 tolerance of the baseline's, speed and memory."""
    from dataclasses import replace

    from edgeinfer.core.errors import ProviderUnavailableError
    from edgeinfer.core.formats import load_npz
    from edgeinfer.pipelines.deploy.bundle_llm import golden_agreement
    from edgeinfer.pipelines.optimize.measurements import gguf_peak_memory_mb
    from edgeinfer.pipelines.target import gguf_runner
    from edgeinfer.runtime.llama import LlamaSettings

    report.kind = "gguf"
    model = inside(bundle, manifest.model)
    golden = load_npz(inside(bundle, manifest.golden), "golden file", max_bytes=MAX_GOLDEN_BYTES)
    raw = np.asarray(golden.get("tokens", []))
    expected = golden.get("expected_log_probs")
    if raw.ndim != 1 or raw.dtype.kind not in "iu" or len(raw) < 2 or len(raw) > 1 << 16:
        raise InputError(f"{manifest.golden} holds no golden tokens (2 to 65536 integers); the bundle is damaged")
    tokens = [int(t) for t in raw]
    if expected is None or np.asarray(expected).ndim != 2 or np.asarray(expected).shape[0] != len(tokens) - 1:
        raise InputError(f"{manifest.golden} holds no log-probs for its golden tokens; the bundle is damaged")
    tol = manifest.tolerance
    assert isinstance(tol, LlmTolerance)  # Manifest.check pairs the tolerance with the format
    settings = LlamaSettings(
        n_ctx=max(64, len(tokens)),
        threads=manifest.threads,
        n_gpu_layers=manifest.n_gpu_layers,
        allow_fallback=allow_fallback,
        extra_buffers=manifest.repack,
    )
    try:
        runner = gguf_runner(model, settings, logits_all=True)
    except ProviderUnavailableError as e:
        report.checks.append(Check("providers", False, str(e)))
        return report
    vocab = runner.llm.n_vocab()
    if min(tokens) < 0 or max(tokens) >= vocab or np.asarray(expected).shape[1] != vocab:
        runner.close()
        raise InputError(
            f"{manifest.golden} holds token ids or log-probs outside the model's vocabulary of {vocab}; "
            "the bundle is damaged"
        )
    report.providers = runner.report.used
    report.checks.append(Check("providers", True, ", ".join(runner.report.used)))
    got = golden_agreement(np.asarray(expected), runner.sequence_log_probs(tokens)[:-1])
    ok = got["kl_mean"] <= tol.max_kld and got["top1_agreement"] >= tol.min_top1
    detail = (
        f"KL {got['kl_mean']:.4f} (at most {tol.max_kld:.4f}), top-1 {got['top1_agreement']:.3f} "
        f"(at least {tol.min_top1:.3f}) on {len(tokens)} golden tokens"
    )
    report.checks.append(Check("golden outputs", ok, detail if not ok else "within tolerance: " + detail))
    speed = runner.bench(32, 16, max(1, min(runs, 5)))
    ms = [1000.0 / t for t in speed["tg_runs"]]
    report.latency_ms = {"p50": float(np.median(ms)), "min": float(min(ms))}
    _check_budgets(report, manifest, enforce, " per generated token")
    runner.close()
    report.peak_memory_mb = gguf_peak_memory_mb(model, replace(settings, n_ctx=manifest.n_ctx))
    _check_memory(report, manifest, enforce)
    return report


def golden_feeds(golden: dict[str, Any], runner, name: str) -> dict[str, Any]:
    """The golden inputs, checked against the model's inputs (names, dtypes, ranks and fixed sizes,
    by the runner) and for a non-empty batch: one line, exit 2, when the bundle is damaged."""
    feeds = {k: v for k, v in golden.items() if not k.startswith("expected:")}
    empty = [k for k, v in feeds.items() if np.asarray(v).size == 0]
    if not feeds or empty:
        raise InputError(f"{name} holds no golden inputs ({', '.join(empty) or 'none'} empty); the bundle is damaged")
    try:
        return runner.check_inputs(feeds)
    except InputError as e:
        raise InputError(f"{name}: {e}; the bundle is damaged") from None
