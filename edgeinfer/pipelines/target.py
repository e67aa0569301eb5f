"""Where a model runs: a device profile, or explicit providers and threads, resolved once.

The runtime takes plain providers and threads; the profile (devices) is read here, so the two
subsystems never import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeinfer.core.providers import Provider


@dataclass(frozen=True)
class OrtTarget:
    """Execution providers in order of preference (None: the CPU) and intra-op threads."""

    providers: list[Provider] | None = None
    threads: int | None = None


def ort_target(profile=None, providers: list[Provider] | None = None, threads: int | None = None) -> OrtTarget:
    """Explicit providers and threads win over the profile's; None means the runtime's default."""
    chosen = list(providers) if providers else (list(profile.providers) if profile else None)
    return OrtTarget(chosen, threads if threads is not None else (profile.threads if profile else None))
