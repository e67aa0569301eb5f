"""The layering of DESIGN.md, checked on the source: imports only go down the tiers, the subsystems
never import each other, and no import circle exists anywhere (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
# Folder -> the module prefix it installs as (pyproject's package-dir mapping).
FOLDERS = {
    "edgeinfer": "edgeinfer",
    "exporters": "edgeinfer.exporters",
    "compress": "edgeinfer.compress",
    "runtime": "edgeinfer.runtime",
    "devices": "edgeinfer.devices",
}
SUBSYSTEMS = (
    "edgeinfer.exporters",
    "edgeinfer.compress",
    "edgeinfer.runtime",
    "edgeinfer.devices",
    "edgeinfer.examples",
)


def modules() -> dict[str, Path]:
    found = {}
    for folder, prefix in FOLDERS.items():
        for file in (ROOT / folder).rglob("*.py"):
            parts = list(file.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = file
    return found


def tier(module: str) -> int:
    if module.startswith("edgeinfer.core"):
        return 0
    if module.startswith(SUBSYSTEMS):
        return 1
    if module.startswith("edgeinfer.pipelines"):
        return 2
    return 3  # the CLI, and the package's public faces (edgeinfer, edgeinfer.testing, __main__)


def group(module: str) -> str | None:
    return next((s for s in SUBSYSTEMS if module == s or module.startswith(s + ".")), None)


def imports(file: Path, module: str, known: set[str]) -> set[str]:
    """Every edgeinfer module `file` imports, at any depth of the code, resolved to a known module."""
    out = set()
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(f, m, set(mods)) for m, f in mods.items()}


def test_imports_only_go_down_the_tiers():
    upward = [
        f"{a} -> {b}"
        for a, deps in graph().items()
        for b in deps
        if tier(b) > tier(a) and not (b == "edgeinfer" and tier(a) <= 3)
    ]
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_subsystems_never_import_each_other():
    crossing = [
        f"{a} -> {b}" for a, deps in graph().items() for b in deps if group(a) and group(b) and group(a) != group(b)
    ]
    assert not crossing, "subsystems importing each other:\n" + "\n".join(sorted(crossing))


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for start in sorted(g):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_the_tiers():
    """Guard against a checker that passes because it found nothing."""
    g = graph()
    assert {
        "edgeinfer.core.errors",
        "edgeinfer.pipelines.export",
        "edgeinfer.cli.app",
        "edgeinfer.runtime.ort",
        "edgeinfer.exporters.source",
    } <= set(g)
    assert "edgeinfer.core.errors" in g["edgeinfer.runtime.ort"]
    assert "edgeinfer.cli.app" in g["edgeinfer.cli.models"]
