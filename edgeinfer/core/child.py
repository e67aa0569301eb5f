"""Child Python processes started isolated: never the current folder, PYTHON* variables or the
user's site-packages on their path, so a stray `json.py` beside a bundle cannot run."""

from __future__ import annotations

import sys


def isolated_python(*args: str) -> list[str]:
    """The command line of a child interpreter in isolated mode (`python -I`): `sys.path` holds
    only the standard library and the installed packages, whatever the working folder holds."""
    return [sys.executable, "-I", *args]
