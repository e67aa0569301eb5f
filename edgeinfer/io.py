"""Safe file writing: outputs appear whole or not at all, never over an input or an existing file.

Every command writes through `atomic_path`, so an interrupted run leaves no half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from edgeinfer.errors import InputError, OutputExistsError


def check_output(output: Path, inputs: list[Path], force: bool) -> None:
    """Refuse an output that would overwrite an input, or an existing file without --force."""
    out = output.resolve()
    for src in inputs:
        if src.exists() and src.resolve() == out:
            raise OutputExistsError(f"output {output} is the input file; choose another output path")
    if output.exists() and not force:
        raise OutputExistsError(f"output {output} exists; pass --force to overwrite it")
    if not output.parent.exists():
        output.parent.mkdir(parents=True, exist_ok=True)


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if not path.is_file():
        raise InputError(f"{what} {path} is not a file")
    return path


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds.

    ONNX files with external data write a second file next to the model, so the temporary
    path is in a private folder and every file written there is moved over.
    """
    final = Path(final)
    tmpdir = final.parent / f".{final.name}.tmp-{os.getpid()}"
    tmpdir.mkdir(parents=True, exist_ok=True)
    try:
        tmp = tmpdir / final.name
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp}")
        for written in tmpdir.iterdir():
            os.replace(written, final.parent / written.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
