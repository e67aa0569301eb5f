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
    """The acceptance test of a bundle on this machine: checksums, providers, golden outputs, latency.

    Args:
        bundle: the bundle folder, or its .tar.gz (unpacked into a temporary folder, checked first).
        allow_fallback: accept running on the CPU when a provider the manifest prefers is missing.
        enforce_latency: fail when the p50 latency is above the bundle's latency budget.
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
    budget = manifest.get("budgets", {}).get("max_latency_ms")
    if budget is not None:
        ok = report.latency_ms["p50"] <= budget
        detail = f"p50 {report.latency_ms['p50']:.3f} ms, budget {budget} ms"
        report.checks.append(Check("latency", ok or not enforce_latency, detail + ("" if ok else " (over budget)")))
    return report
