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


def _installed_by(command: str) -> list[tuple[str, set[str], bool]]:
    """(distribution, extras, with its dependencies) for each package a `pip install` line names."""
    import shlex

    out = []
    for part in command.split("&&"):
        words = shlex.split(part.split("#")[0])
        if words[:2] != ["pip", "install"]:
            continue
        deps = "--no-deps" not in words
        for word in words[2:]:
            if word.startswith("-"):
                continue
            name, _, extras = word.partition("[")
            name = "edgeinfer" if name in (".", "") else re.split(r"[=<>~!]", name)[0]
            out.append((name, {e.strip() for e in extras.rstrip("]").split(",") if e.strip()}, deps))
    return out


def _closure(roots: list[tuple[str, set[str], bool]]) -> set[str]:
    """Every distribution the roots bring, their dependencies (markers evaluated) included."""
    from importlib import metadata

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name, extras, deps = todo.pop()
        key = norm(name) + "[" + ",".join(sorted(extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        if not deps:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            wanted = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""})
            if wanted:
                todo.append((req.name, set(req.extras), True))
    return {k.split("[")[0] for k in seen}


def test_every_module_a_readme_block_imports_comes_with_what_the_readme_installed_before_it():
    """A new user installs what the README's install blocks say, not the dev extra CI uses: each
    module a block's Python imports must come with those (the serve example once used openai,
    which only the dev extra brought)."""
    from importlib import metadata

    providers = metadata.packages_distributions()
    installed: set[str] = set()
    for line, body, skip in readme_blocks():
        if skip is not None and "this is the test command" in (skip or ""):
            continue  # the dev extra of the test suite, not a user's install
        installs = _installed_by(body)
        if installs:
            installed |= _closure(installs)
        python = "\n".join(
            re.findall(r"python[^\n]*<<'PY'\n(.*?)\nPY", body, re.S) + re.findall(r'python -c "([^"]*)"', body)
        )
        for module in set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", python, re.M)):
            if module in sys.stdlib_module_names:
                continue
            dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [])}
            assert dists & installed, (
                f"README.md block at line {line + 1} imports {module} ({', '.join(dists) or 'not installed'}), "
                "which no install block before it brings"
            )
