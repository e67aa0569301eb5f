"""Timing that holds up on a noisy shared machine: warm-up, interleaved runs, medians and tails.

Candidates are timed round-robin in the same loop, so a burst of load hits all of them alike.
No runtime may busy-wait between calls: ONNX Runtime sessions disable spinning, and the CLI lets
OpenMP (PyTorch's, llama.cpp's) spin only briefly before it sleeps (cli.app.openmp_wait_env).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import numpy as np

from edgeinfer.core.progress import QUIET, Progress


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
    fns: dict[str, Callable[[], object]], runs: int, warmup: int = 3, progress: Progress = QUIET
) -> dict[str, list[float]]:
    """Call each function `warmup` times, then `runs` rounds of one call each; seconds per call."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for done in range(1, runs + 1):
        for name, fn in fns.items():
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
    import sys

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
    import os
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
