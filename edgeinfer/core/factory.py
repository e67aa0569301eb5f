"""Running a user's Python on purpose: `package.module:function` and `path/file.py:function`.

Only the module the spec names is imported. The current folder is never put on `sys.path`, so a
stray `./onnxscript.py` cannot shadow a library. Code named by a data file (a sidecar) is not
imported here unless the caller passes `trusted=True` (the CLI's `--trust-source`).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from edgeinfer.core.errors import ConfigError, InputError, option


def is_factory_spec(spec: str) -> bool:
    """`a.b:fn` or `dir/file.py:fn`, and not an existing path (a Windows drive has a colon too)."""
    target, sep, func = spec.rpartition(":")
    return bool(sep and target and func.isidentifier() and not Path(spec).exists())


def _import_file(file: Path) -> ModuleType:
    if not file.is_file():
        raise InputError(f"factory file {file} does not exist")
    name = f"edgeinfer_user_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise InputError(f"{file} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


def _import_dotted(target: str) -> ModuleType:
    """Import `target`; its top-level package may live in the current folder, nothing else from there."""
    top = target.split(".")[0]
    if top not in sys.modules and importlib.util.find_spec(top) is None:
        local = importlib.machinery.PathFinder.find_spec(top, [str(Path.cwd())])
        if local is not None and local.loader is not None:
            module = importlib.util.module_from_spec(local)
            sys.modules[top] = module
            try:
                local.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(top, None)
                raise
    return importlib.import_module(target)


def import_callable(spec: str, what: str = "factory") -> Callable[..., Any]:
    """The callable that `spec` names. This runs the module's code: only for specs the user typed."""
    target, _, func = spec.rpartition(":")
    if not target or not func:
        raise ConfigError(f"{what} {spec!r} must look like package.module:function or path/file.py:function")
    if target.endswith(".py"):
        module = _import_file(Path(target))
    else:
        try:
            module = _import_dotted(target)
        except ImportError as e:
            raise InputError(f"cannot import {target!r} for {what} {spec!r}: {e}") from e
    fn = getattr(module, func, None)
    if not callable(fn):
        raise InputError(f"{target} has no function {func!r}")
    return fn


def require_trust(spec: str, origin: str, trusted: bool) -> None:
    """Refuse to run code that a data file (not the user's command line) names, unless trusted."""
    if not trusted:
        raise ConfigError(
            f"{origin} names the Python code {spec!r}; edgeinfer does not run code named by a "
            "data file. If you trust it, pass "
            + option("trust_source", True)
            + " (or name it yourself on the command line)"
        )
