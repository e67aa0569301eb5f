"""What native libraries print: llama.cpp's load log, the QNN SDK's banner, kept off the user's streams.

They write with C stdio straight to file descriptors 1 and 2, past Python's sys.stdout, so a
`--json > report.json` would otherwise start with a banner. The text is kept, so an error can
quote the library's own reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections.abc import Callable, Iterator


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)  # C's buffered stdout would otherwise surface later
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def captured_fd(fd: int) -> Iterator[Callable[[], str]]:
    """Redirect file descriptor `fd` (1 or 2) into a temporary file for the block; yield a reader."""
    stream = sys.stdout if fd == 1 else sys.stderr
    with contextlib.suppress(Exception):
        stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), fd)

        def read() -> str:
            _flush_c_stdio()
            log.flush()
            log.seek(0)
            return log.read()[-50_000:].decode("utf-8", "replace")

        try:
            yield read
        finally:
            with contextlib.suppress(Exception):
                stream.flush()  # Python-level prints made inside the block belong to the capture too
            _flush_c_stdio()
            os.dup2(saved, fd)
            os.close(saved)


@contextlib.contextmanager
def quiet_native() -> Iterator[Callable[[], str]]:
    """Both stdout and stderr of native code captured; the reader returns what stderr got."""
    with captured_fd(1), captured_fd(2) as read_err:
        yield read_err
