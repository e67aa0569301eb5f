"""Long mutation-fuzzing run of edgeinfer's file checks, for before a release.

    python benchmarks/fuzz.py --minutes 10

Mutates the header regions of a small real GGUF (a loadable Llama), LeNet's ONNX file and a
safetensors file (tests/fuzzing.py), feeds each to the loaders the CLI uses, and counts cases
and findings: any exception that is not an EdgeInferError, and any crash of llama.cpp on a GGUF
that edgeinfer's own check accepted (each accepted file is loaded in a child process). Findings
are kept in --out for triage. The result becomes the "Fuzzing the file checks" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import parse_args, write_section  # noqa: E402


def main() -> None:
    import argparse

    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    from edgeinfer.core.errors import EdgeInferError
    from tests import fuzzing

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--minutes", type=float, default=5.0, help="total fuzzing time, split over the three formats")
    minutes = extra.parse_known_args()[0].minutes
    args = parse_args(__doc__, runs=None)
    # A loader that allocates without bound must become a finding (MemoryError), not an OOM kill
    # of this process (how the unbounded GGUF array count was found).
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (12 * 2**30, resource.RLIM_INFINITY))
    work = args.out / "fuzz"
    shutil.rmtree(work, ignore_errors=True)
    findings = work / "findings"
    findings.mkdir(parents=True)

    from edgeinfer.pipelines.export import export_model

    lenet = work / "lenet.onnx"
    export_model("edgeinfer.examples.digits:lenet", lenet)
    gguf = fuzzing.tiny_llama_gguf(work / "tiny.gguf")
    safet = fuzzing.tiny_safetensors(work / "tiny.safetensors")
    formats = {
        "GGUF (tiny Llama)": (".gguf", gguf.read_bytes(), fuzzing.gguf_header_length(gguf), fuzzing.feed_gguf),
        "ONNX (LeNet-5)": (".onnx", lenet.read_bytes(), 4096, fuzzing.feed_onnx),
        "safetensors": (
            ".safetensors",
            safet.read_bytes(),
            fuzzing.safetensors_header_length(safet),
            fuzzing.feed_safetensors,
        ),
    }
    budget = minutes * 60 / len(formats)
    rows = []
    for label, (suffix, data, region, feed) in formats.items():
        counts = {"cases": 0, "accepted": 0, "refused": 0, "findings": 0}
        accepted = work / f"accepted{suffix}"
        accepted.mkdir()
        deadline = time.monotonic() + budget

        @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))  # pyright: ignore[reportArgumentType]
        @given(ops=fuzzing.mutations(st, len(data), region))
        def run(ops):
            mutated = fuzzing.apply(data, ops)
            counts["cases"] += 1
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"m{suffix}"
                path.write_bytes(mutated)
                try:
                    feed(path)
                    counts["accepted"] += 1
                    if suffix == ".gguf" and mutated != data:
                        (accepted / f"case{counts['cases']:07d}.gguf").write_bytes(mutated)
                except EdgeInferError:
                    counts["refused"] += 1
                except Exception:  # a finding: kept with its traceback
                    counts["findings"] += 1
                    case = findings / f"case{counts['cases']:07d}{suffix}"
                    case.write_bytes(mutated)
                    case.with_suffix(".txt").write_text(traceback.format_exc())

        chunk = 0
        while time.monotonic() < deadline:  # seeded chunks of 200 cases until the time is spent
            seed(chunk)(run)()
            chunk += 1
        native = _llama_crashes(accepted, findings, fuzzing.LLAMA_LOAD_SCRIPT) if suffix == ".gguf" else 0
        counts["findings"] += native
        print(label, counts, f"llama.cpp crashes {native}" if suffix == ".gguf" else "", flush=True)
        rows.append(
            [
                label,
                f"{counts['cases']:,}",
                f"{counts['refused']:,}",
                f"{counts['accepted']:,}",
                str(native) if suffix == ".gguf" else "-",
                f"**{counts['findings']}**",
            ]
        )
    write_section(
        "Fuzzing the file checks",
        f"python benchmarks/fuzz.py --minutes {minutes:g}",
        ["file", "cases", "refused (EdgeInferError)", "accepted", "llama.cpp crashes on accepted", "findings"],
        rows,
        notes="Header regions mutated (byte flips, extreme 32/64-bit counts and offsets, truncation); a "
        "finding is any other exception, or a native crash. Accepted GGUFs are then loaded by "
        "llama.cpp in a child process.",
    )


def _llama_crashes(accepted: Path, findings: Path, script: str) -> int:
    """Load each accepted GGUF in llama.cpp, one child process per batch, bisecting on a crash."""
    files = sorted(accepted.glob("*.gguf"))
    crashes = 0
    for i in range(0, len(files), 50):
        batch = files[i : i + 50]
        if _loads(batch, script):
            continue
        for f in batch:
            if not _loads([f], script):
                crashes += 1
                shutil.copy(f, findings / f"llama-crash-{f.name}")
    return crashes


def _loads(files: list[Path], script: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            shutil.copy(f, Path(tmp) / f.name)
        proc = subprocess.run([sys.executable, "-c", script, tmp], capture_output=True, text=True, timeout=600)
    return proc.returncode == 0


if __name__ == "__main__":
    main()
