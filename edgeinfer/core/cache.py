"""edgeinfer's cache folder: trained example models, rebuilt reference models, baseline log-probs,
optimize's measurements.

`$EDGEINFER_CACHE`, else `$XDG_CACHE_HOME/edgeinfer`, else `~/.cache/edgeinfer`. It is capped
(`$EDGEINFER_CACHE_MAX_MB`, default 2048): after each large write, the least recently used files
go first until it fits. `edgeinfer cache` lists it, `edgeinfer cache clean` empties it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_MB = 2048


def cache_dir() -> Path:
    """The cache folder, created on first use."""
    root = os.environ.get("EDGEINFER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "edgeinfer"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_bytes() -> int:
    """The cap on the cache's size: $EDGEINFER_CACHE_MAX_MB (a number of MiB), else 2048 MiB."""
    from edgeinfer.core.errors import ConfigError

    raw = os.environ.get("EDGEINFER_CACHE_MAX_MB", str(DEFAULT_MAX_MB))
    try:
        mb = float(raw)
    except ValueError:
        raise ConfigError(f"EDGEINFER_CACHE_MAX_MB={raw!r} is not a number of MiB") from None
    if not 0 <= mb <= 1 << 30:
        raise ConfigError(f"EDGEINFER_CACHE_MAX_MB={raw!r} must be 0 ... {1 << 30}")
    return int(mb * 2**20)


def touch(path: Path) -> None:
    """Mark a cached file as used now (eviction removes the least recently used first)."""
    try:
        os.utime(path)
    except OSError:
        pass


@dataclass(frozen=True)
class CacheEntry:
    """One top-level item of the cache: a file, or a folder counted as a whole."""

    name: str
    files: int
    bytes: int
    last_used: float  # seconds since the epoch: the newest modification inside

    def to_dict(self) -> dict:
        return {"name": self.name, "files": self.files, "bytes": self.bytes, "last_used": self.last_used}


def _files(path: Path) -> list[Path]:
    if path.is_symlink() or path.is_file():
        return [path]
    return [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]


def entries(root: Path | None = None) -> list[CacheEntry]:
    """What the cache holds, largest first."""
    root = root or cache_dir()
    out = []
    for item in sorted(root.iterdir()):
        files = _files(item)
        stats = [f.lstat() for f in files]
        out.append(
            CacheEntry(
                item.name,
                len(files),
                sum(s.st_size for s in stats),
                max((s.st_mtime for s in stats), default=item.lstat().st_mtime),
            )
        )
    return sorted(out, key=lambda e: -e.bytes)


def clean(older_than_days: float | None = None, root: Path | None = None) -> tuple[int, int]:
    """Remove cached files (those not used for `older_than_days`, or all); (files, bytes) freed."""
    root = root or cache_dir()
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    removed = freed = 0
    for item in list(root.iterdir()):
        for f in _files(item):
            st = f.lstat()
            if cutoff is None or st.st_mtime < cutoff:
                f.unlink(missing_ok=True)
                removed, freed = removed + 1, freed + st.st_size
        if item.is_dir() and not item.is_symlink():
            _drop_empty_folders(item)
    return removed, freed


def _drop_empty_folders(folder: Path) -> None:
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


# Folders of many independent files (one per model and text, one per candidate): evicted file by
# file. Anything else at the top level (a rebuilt model folder) goes as a whole: half of one is useless.
_FILE_BY_FILE = ("logits", "measurements")


def _eviction_units(root: Path) -> list[tuple[float, int, Path]]:
    """(last used, bytes, path) of everything eviction removes as one."""
    units = []
    for item in root.iterdir():
        split = item.is_dir() and not item.is_symlink() and item.name in _FILE_BY_FILE
        for unit in _files(item) if split else [item]:
            stats = [f.lstat() for f in _files(unit)]
            units.append((max((st.st_mtime for st in stats), default=0.0), sum(st.st_size for st in stats), unit))
    return units


def enforce_cap(keep: Path | None = None, root: Path | None = None) -> int:
    """Evict the least recently used files until the cache fits max_bytes(); `keep` (the file
    or folder just written) is never evicted. Returns the bytes freed."""
    root = root or cache_dir()
    cap = max_bytes()
    units = _eviction_units(root)
    total, freed = sum(size for _, size, _ in units), 0
    for _, size, path in sorted(units):
        if total - freed <= cap:
            break
        if keep is not None and keep.is_relative_to(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        freed += size
    return freed
