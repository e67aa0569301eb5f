"""Safe file writing: outputs appear whole or not at all, never over an input or an existing file.

Every command writes through `atomic_path`, so an interrupted run leaves no half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from edgeinfer.core.errors import InputError, OutputExistsError, option


def check_output(output: Path, inputs: list[Path], force: bool) -> None:
    """Refuse an output that would overwrite an input, or an existing file without --force.

    Nothing is created here: missing parent folders appear only when the output is written.
    """
    out = output.resolve()
    for src in inputs:
        if src.exists() and src.resolve() == out:
            raise OutputExistsError(f"output {output} is the input file; choose another output path")
    if output.is_dir():
        raise OutputExistsError(f"output {output} is a directory; give a file path")
    if output.exists() and not force:
        raise OutputExistsError(f"output {output} exists; pass {option('force', True)} to overwrite it")
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    if parent is not None and parent != out and not parent.is_dir():
        raise OutputExistsError(f"cannot write {output}: {parent} is a file, not a folder")
    if parent is not None and parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputExistsError(f"cannot write {output}: the folder {parent} is not writable")


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a readable regular file, else one line saying what it is instead."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory, not a file")
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if not path.is_file():
        raise InputError(f"{what} {path} is not a regular file")
    return path


_TMP_PATTERN = re.compile(r"^\..+\.tmp-(\d+)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_stale_temporaries(folder: Path, pattern: re.Pattern[str] = _TMP_PATTERN) -> list[Path]:
    """Remove the folders named like `pattern` (by default the hidden `.NAME.tmp-PID` ones; its
    group 1 is the PID) that killed runs (SIGKILL, power loss) left behind."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m and entry.is_dir() and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _make_parents(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return the ones created, deepest first."""
    created = []
    for p in [folder, *folder.parents]:
        if p.exists():
            break
        created.append(p)
    folder.mkdir(parents=True, exist_ok=True)
    return created


@contextlib.contextmanager
def output_lock(final: Path) -> Iterator[None]:
    """An exclusive lock per output path, so two runs never write one file (released on any exit).

    The lock file is removed afterwards; a run that locked a file just removed (its inode no
    longer at the path) tries again on the new one.
    """
    import fcntl

    lock = final.parent / f".{final.name}.lock"
    for _ in range(10):
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputExistsError(
                f"another edgeinfer run is writing {final}; wait for it to finish or choose another output"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise OutputExistsError(f"could not lock {final} (other runs keep replacing its lock); try again")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def atomic_path(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; move it into place only if the block succeeds.

    ONNX files with external data write a second file next to the model, so the temporary
    path is in a private folder and every file written there is moved over. The output is
    locked while it is written; when `overwrite` is false, a file that appeared meanwhile (a
    concurrent run) is kept and this write refused. Folders created for it are removed again
    if the block fails.
    """
    final = Path(final)
    created = _make_parents(final.parent)
    committed = False
    try:
        clean_stale_temporaries(final.parent)
        with output_lock(final):
            tmpdir = final.parent / f".{final.name}.tmp-{os.getpid()}"
            tmpdir.mkdir(exist_ok=True)
            try:
                tmp = tmpdir / final.name
                yield tmp
                if not tmp.exists():
                    raise FileNotFoundError(f"nothing was written to {tmp}")
                if final.exists() and not overwrite:
                    raise OutputExistsError(
                        f"output {final} was written by another run meanwhile; kept it. Pass {option('force', True)} to overwrite it"
                    )
                for written in tmpdir.iterdir():
                    os.replace(written, final.parent / written.name)
                committed = True
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
    finally:
        if not committed:
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()


def write_text_atomic(path: Path, text: str, *, overwrite: bool = True) -> None:
    """Write a small text file (a sidecar, a report) whole or not at all."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


SCRATCH_PREFIX = "edgeinfer-"
_SCRATCH_PATTERN = re.compile(r"^edgeinfer-[a-z-]+?-(\d+)-")


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """A private temporary folder for intermediate files (`edgeinfer-KIND-PID-...` in the system's
    temporary folder), removed afterwards. Folders of this kind whose process is gone (SIGKILL, a
    power loss: hundreds of MB for an LLM search) are removed first, so they never pile up."""
    import tempfile

    clean_stale_temporaries(Path(tempfile.gettempdir()), _SCRATCH_PATTERN)
    folder = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{kind}-{os.getpid()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
