"""The first hour, as a new user spends it: every shell block of README.md, as written, in order,
in one fresh folder. A block preceded by `<!-- first-hour: install ... -->` is skipped (CI runs
the install itself), as is one marked `<!-- first-hour: needs a GPU -->` or `needs an NPU`;
nothing else is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"(?:<!--\s*first-hour:\s*(?P<mark>[^>]*?)\s*-->\s*\n)?```bash\n(?P<body>.*?)```", re.S)


def readme_blocks() -> list[tuple[int, str, str | None]]:
    """(line, shell text, skip reason or None) for every ```bash block of the README."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("body"))
        mark = m.group("mark")
        skip = mark if mark and (mark.startswith("install") or "needs a" in mark) else None
        blocks.append((line, m.group("body"), skip))
    return blocks


def test_readme_has_blocks_and_every_skip_is_explained():
    blocks = readme_blocks()
    assert len(blocks) >= 6
    run = [b for b in blocks if b[2] is None]
    assert len(run) >= 5, "almost every README block must run"
    assert all(b[2].startswith("install") or "needs a" in b[2] for b in blocks if b[2] is not None)


@pytest.mark.slow
def test_every_readme_block_runs_as_written(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "80",
        "PYTHONPATH": "",
    }
    for line, body, skip in readme_blocks():
        if skip is not None:
            continue
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", body],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert proc.returncode == 0, (
            f"README.md block at line {line + 1} exited {proc.returncode}:\n{body}\n"
            f"--- stderr ---\n{proc.stderr[-3000:]}"
        )
        assert "Traceback" not in proc.stderr, f"README.md block at line {line + 1}:\n{proc.stderr[-3000:]}"
