"""Timing that holds up on a noisy shared machine: warm-up, interleaved runs, medians and tails.

Candidates are timed round-robin in the same loop, so a burst of load hits all of them alike.
No runtime may busy-wait between calls: ONNX Runtime sessions disable spinning, and OpenMP
(PyTorch's, llama.cpp's) spins only briefly before it sleeps (`measurement_env`). Every entry point
that measures applies that setting the same way (`apply_measurement_env`): the CLI, the Python
functions that time (optimize, compare, bench) and Ray workers (through their runtime environment).
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from collections.abc import Callable

import numpy as np

from edgeinfer.core.progress import QUIET, Progress

log = logging.getLogger(__name__)

# Libraries that load libgomp: once one is imported, OpenMP has read its settings for good.
_OPENMP_USERS = ("torch", "llama_cpp")


def measurement_env() -> dict[str, str]:
    """How long idle OpenMP threads spin before they sleep, unless the user already chose.

    PyTorch's workers spin for a long time between calls by default (libgomp: 300,000 rounds); with
    ONNX Runtime sessions taking turns in an interleaved benchmark they oversubscribe the cores and
    distort every figure (seen here: eager LeNet at 35 ms instead of 0.8 ms). Not spinning at all
    (PASSIVE alone) is worse for the waits inside one computation: llama.cpp meets an OpenMP barrier
    at every node, and SmolLM2 generated 3.1x slower on 2 threads (41 instead of 126 tokens/s); eager
    LeNet ran 2.7x slower. A short spin (3,000 rounds, microseconds) catches those and still sleeps
    between calls (benchmarks/openmp_wait.py, "OpenMP waiting" in BENCHMARKS.md).

    Returns the variables to set; {} when the user set either one (theirs wins)."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return {}
    return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


def openmp_setting() -> dict[str, str]:
    """The OpenMP wait setting measurements run under in this process (after apply_measurement_env):
    what a Ray worker's runtime environment must carry to time alike."""
    return {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}


def apply_measurement_env() -> dict[str, str]:
    """Set `measurement_env()` in this process; every entry point that times calls this first.

    OpenMP reads the variables once, when PyTorch or llama.cpp first loads: a caller that imported
    one of them before edgeinfer set them times under OpenMP's defaults, which is said once.
    Returns the setting now in effect (openmp_setting())."""
    global _warned
    chosen = measurement_env()
    if chosen:
        late = [m for m in _OPENMP_USERS if m in sys.modules]
        os.environ.update(chosen)
        if late and not _warned:
            _warned = True
            log.warning(
                f"{late[0]} was imported before edgeinfer set OpenMP's wait policy; timings here may differ "
                "from the CLI's (set OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=3000 before starting Python)"
            )
    return openmp_setting()


_warned = False


def percentiles(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1000.0
    return {
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "min": float(ms.min()),
    }


def interleaved(
    fns: dict[str, Callable[[], object]], runs: int, warmup: int = 3, progress: Progress = QUIET, shuffle: bool = False
) -> dict[str, list[float]]:
    """Call each function `warmup` times, then `runs` rounds of one call each; seconds per call.

    `shuffle`: each round in its own (seeded) order. With many functions, the one that always runs
    right after a heavy one (eager PyTorch: its caches, its threads going idle) pays for it: 0.3 ms
    of a 2.5 ms call, measured; shuffling spreads that over all of them."""
    import random

    order = random.Random(0)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for done in range(1, runs + 1):
        names = list(fns)
        if shuffle:
            order.shuffle(names)
        for name, fn in ((n, fns[n]) for n in names):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        progress.advance(done, runs, "timing")
    return times


def speedup_ci(base_s: list[float], cand_s: list[float], seed: int = 0, n: int = 1000) -> tuple[float, float, float]:
    """Median-ratio speedup (baseline / candidate) with a bootstrap 95% interval over paired rounds."""
    b, c = np.asarray(base_s), np.asarray(cand_s)
    point = float(np.median(b) / np.median(c))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(b), size=(n, len(b)))
    ratios = np.median(b[idx], axis=1) / np.median(c[idx], axis=1)
    return point, float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB.

    Linux: VmHWM, the high-water mark of this address space. Not ru_maxrss, which a child started
    with fork + exec inherits from its parent, so a probe process would report its parent's peak.
    Elsewhere ru_maxrss (macOS reports bytes, the rest KiB)."""
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def read_bandwidth_gb_s(mib: int = 512, threads: int | None = None, passes: int = 5) -> float:
    """This machine's streaming-read bandwidth, GB/s: `threads` workers (default: every core) each
    sum their slice of a `mib` MiB array (numpy releases the GIL while it reduces); the best of
    `passes`. An array far larger than the caches, so it measures memory, not cache."""
    from concurrent.futures import ThreadPoolExecutor

    n = max(1, threads or os.cpu_count() or 1)
    data = np.ones(mib * 2**20 // 8, dtype=np.float64)
    slices = np.array_split(data, n)
    best = 0.0
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(np.sum, slices))  # warm: pages touched, threads started
        for _ in range(passes):
            start = time.perf_counter()
            list(pool.map(np.sum, slices))
            best = max(best, data.nbytes / (time.perf_counter() - start) / 1e9)
    return best
