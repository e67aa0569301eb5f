"""What `optimize` measures that outlives one run: the measurement cache, and peak memory.

The cache keeps each candidate's figures under a key made of what determines them: the input
model's sha256, the recipe (passes and configs), the evaluation data's sha256, the timing settings,
the device profile, and the machine (CPU model, ISA, cores, runtime versions). An interrupted or
repeated `optimize` finds the candidates it already measured and goes on from there; a change to
any part of the key measures afresh. Entries are small JSON files written atomically.

Peak memory is measured in a fresh process per candidate (loading the model and running one eval
batch, or a prompt for an LLM), so one candidate's allocations cannot hide in another's peak.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeinfer.core.child import isolated_python
from edgeinfer.core.errors import InputError
from edgeinfer.core.schema import SHA256_HEX, Record

log = logging.getLogger(__name__)

CACHE_SCHEMA = 2  # 2: peak memory from VmHWM (1 inherited the parent's ru_maxrss)


def machine_fingerprint() -> dict[str, Any]:
    """What makes a latency figure from this machine comparable to another's: CPU, ISA, cores,
    and the runtimes' versions."""
    from edgeinfer import __version__
    from edgeinfer.devices import cpu_model, host_isa

    out: dict[str, Any] = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "isa": host_isa(),
        "cores": os.cpu_count(),
        "edgeinfer": __version__,
    }
    for mod in ("onnxruntime", "llama_cpp"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def data_sha256(spec: str) -> str:
    """sha256 of evaluation data named by a file or a folder; a factory spec stands for itself."""
    from edgeinfer.pipelines.deploy.bundle import sourcesha256_file

    return sourcesha256_file(spec) or hashlib.sha256(spec.encode()).hexdigest()


MAX_ENTRY_BYTES = 1 << 20


@dataclass(frozen=True)
class CachedFigures(Record):
    """What one cache entry may hold (search.Candidate.FIGURES). A hit is a hint for the search:
    the candidate that ships is built and measured again before its figures reach a bundle."""

    metrics: dict[str, float] = field(default_factory=dict)
    drop: float | None = None
    p50_ms: float | None = None
    speedup: float | None = None
    speedup_ci95: tuple[float, float] | None = None
    size_bytes: int | None = None
    memory_mb: float | None = None
    sha256: str | None = None
    task: str | None = None
    measured_on: str | None = None

    def check(self, where: str) -> None:
        positive = {"p50_ms": self.p50_ms, "speedup": self.speedup}
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise InputError(f"{where}.{name} is {value}; it must be above 0")
        if (self.size_bytes is not None and self.size_bytes < 0) or (self.memory_mb is not None and self.memory_mb < 0):
            raise InputError(f"{where}: sizes are at least 0")
        if self.sha256 is not None and not SHA256_HEX.fullmatch(self.sha256):
            raise InputError(f"{where}.sha256 is not a sha256")


class MeasurementCache:
    """Candidate figures by (input sha256, recipe, data, settings, profile, machine).

    Args:
        context: everything but the recipe that the figures depend on (JSON-able).
        enabled: False reads nothing (every candidate measured afresh) but still writes.
        root: the folder (default: edgeinfer's cache folder / "measurements").
    """

    def __init__(self, context: dict[str, Any], *, enabled: bool = True, root: Path | None = None) -> None:
        from edgeinfer.core.cache import cache_dir

        self.context = {"schema": CACHE_SCHEMA, **context, "machine": machine_fingerprint()}
        self.enabled = enabled
        self.root = root or cache_dir() / "measurements"

    def key(self, steps: list[tuple[str, dict[str, Any]]]) -> str:
        doc = {**self.context, "steps": [[p, c] for p, c in steps]}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, steps: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        path = self.root / f"{self.key(steps)}.json"
        if not path.is_file():
            return None
        try:
            if path.stat().st_size > MAX_ENTRY_BYTES:
                raise ValueError(f"{path.stat().st_size} bytes")
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            log.warning(f"measurement cache entry {path} is unreadable; measuring again")
            return None
        if not isinstance(entry, dict) or entry.get("schema") != CACHE_SCHEMA:
            return None
        try:
            figures = CachedFigures.parse({k: v for k, v in entry.items() if k not in ("schema", "steps")}, path.name)
        except InputError as e:
            log.warning(f"measurement cache entry {path} does not fit its schema ({e}); measuring again")
            return None
        return dataclasses.asdict(figures)

    def put(self, steps: list[tuple[str, dict[str, Any]]], figures: dict[str, Any]) -> None:
        from edgeinfer.core.io import write_text_atomic

        self.root.mkdir(parents=True, exist_ok=True)
        entry = {"schema": CACHE_SCHEMA, "steps": [[p, c] for p, c in steps], **figures}
        write_text_atomic(self.root / f"{self.key(steps)}.json", json.dumps(entry, default=str) + "\n")


# Run in a fresh interpreter: load the model, run it once, print the peak resident MiB.
_ONNX_PROBE = """
import sys, json
import numpy as np
from edgeinfer.core.measure import peak_rss_mb
from edgeinfer.core.model_kind import ModelKind
from edgeinfer.core.providers import Provider
from edgeinfer.runtime import Target, load
model, feeds, providers, threads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
openvino = json.loads(sys.argv[5])
if openvino is not None:
    target = Target(None, threads, True, backend="openvino", options=tuple(sorted(openvino.items())))
else:
    target = Target(tuple(Provider.parse(p) for p in providers), threads, True, options=(("profile_first_run", False),))
runner = load(model, target, expect=ModelKind.ONNX)
names = {i.name for i in runner.inputs}
with np.load(feeds, allow_pickle=False) as data:
    runner.run({k: data[k] for k in data.files if k in names})
print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
"""

_GGUF_PROBE = """
import sys, json
from edgeinfer.core.measure import peak_rss_mb
from edgeinfer.core.model_kind import ModelKind
from edgeinfer.runtime import load
from edgeinfer.runtime.llama import LlamaSettings, target_from_settings
model, settings, n_prompt = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
runner = load(model, target_from_settings(LlamaSettings(**settings)), expect=ModelKind.GGUF)
runner.bench(n_prompt, 8, 1)
print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
"""

_GENAI_PROBE = """
import sys, json
from edgeinfer.core.measure import peak_rss_mb
from edgeinfer.core.model_kind import ModelKind
from edgeinfer.runtime import load
model, n_prompt = sys.argv[1], int(sys.argv[2])
load(model, expect=ModelKind.GENAI).bench(n_prompt, 8, 1)
print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
"""


def _probe(code: str, args: list[str], what: str) -> float:
    proc = subprocess.run(
        isolated_python("-c", code, *args), capture_output=True, text=True, timeout=1800, env=os.environ.copy()
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"measuring the peak memory of {what} failed: {tail[:300]}")
    return float(json.loads(lines[-1])["peak_rss_mb"])


def onnx_peak_memory_mb(
    model: Path, feeds: Path, providers: list[str], threads: int | None, openvino: dict[str, str] | None = None
) -> float:
    """Peak resident MiB of a fresh process that loads `model` on `providers` (or on OpenVINO with
    these options: device, precision) and runs `feeds` once."""
    args = [str(model), str(feeds), json.dumps(providers), json.dumps(threads), json.dumps(openvino)]
    return _probe(_ONNX_PROBE, args, Path(model).name)


def gguf_peak_memory_mb(model: Path, settings, n_prompt: int = 64) -> float:
    """Peak resident MiB of a fresh process that loads `model` with these LlamaSettings (context,
    threads, KV type, GPU layers, repack: its KV cache is allocated whole at `settings.n_ctx` tokens)
    and evaluates an `n_prompt`-token prompt."""
    from dataclasses import asdict

    return _probe(_GGUF_PROBE, [str(model), json.dumps(asdict(settings)), str(n_prompt)], Path(model).name)


_INTERPRETER_PROBE = """
import json
import llama_cpp, numpy
from edgeinfer.core.measure import peak_rss_mb
from edgeinfer.runtime.llama import LlamaRunner
print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
"""


def interpreter_memory_mb() -> float:
    """Resident MiB of a fresh interpreter with llama-cpp-python and edgeinfer's runner imported:
    what a process holds before it loads any model (measured, since it varies by machine)."""
    return _probe(_INTERPRETER_PROBE, [], "the Python runtime")


def genai_peak_memory_mb(folder: Path, n_prompt: int = 64) -> float:
    """Peak resident MiB of a fresh process that loads an ONNX Runtime GenAI folder and evaluates
    an `n_prompt`-token prompt (its KV cache grows with the sequence, up to the search's length)."""
    return _probe(_GENAI_PROBE, [str(folder), str(n_prompt)], Path(folder).name)
