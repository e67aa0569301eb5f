"""Bounds on numbers a user passes, checked against this machine before anything is allocated.

A typo such as `--threads 100000` or `--shape batch=100000000` must be one clear line, not a
process that grows until the kernel kills it.
"""

from __future__ import annotations

import logging
import os

from edgeinfer.core.errors import ConfigError, option

log = logging.getLogger(__name__)


def check_threads(threads: int | None) -> int | None:
    """`threads` if this machine can usefully run that many (at most 4 per core, at least 1)."""
    if threads is None:
        return None
    cores = os.cpu_count() or 1
    if threads < 1 or threads > max(4 * cores, 8):
        raise ConfigError(
            f"{option('threads', threads)}: this machine has {cores} cores; choose 1 ... {max(4 * cores, 8)}"
        )
    return threads


def check_fits_in_memory(n_bytes: int, what: str, hint: str) -> None:
    """Refuse an allocation larger than most of the free memory, naming what would need it."""
    import psutil

    free = psutil.virtual_memory().available
    if n_bytes > 0.8 * free:
        raise ConfigError(
            f"{what} needs {n_bytes / 2**30:.1f} GiB; this machine has {free / 2**30:.1f} GiB free. {hint}"
        )


def check_memory(peak_rss_mb: float, profile) -> None:
    """Warn when the measured peak memory would not fit the device profile's `memory_mb`."""
    if profile is not None and profile.memory_mb and peak_rss_mb > profile.memory_mb:
        log.warning(
            f"peak memory {peak_rss_mb:.0f} MiB exceeds device {profile.name}'s memory_mb of "
            f"{profile.memory_mb} MiB (measured on this machine, with edgeinfer's own overhead)"
        )
