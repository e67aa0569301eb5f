"""edgeinfer's cache folder: trained example models, rebuilt reference models, baseline log-probs.

`$EDGEINFER_CACHE`, else `$XDG_CACHE_HOME/edgeinfer`, else `~/.cache/edgeinfer`.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder, created on first use."""
    root = os.environ.get("EDGEINFER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "edgeinfer"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
