"""Typed errors: every failure a user can cause says what is wrong and what to do.

The CLI prints the message as one line and exits with code 2; `--verbose` adds the traceback.
Library code names an option with `option("allow_fallback")`: a Python caller reads
`allow_fallback=True`, a CLI user `--allow-fallback` (the CLI runs inside `cli_option_names`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import TypeVar


class EdgeInferError(Exception):
    """Base of every error edgeinfer raises on purpose; the CLI exits with its `exit_code`."""

    exit_code = 2


class ConfigError(EdgeInferError):
    """A flag, config file or device profile holds a bad value."""


class InputError(EdgeInferError):
    """An input file or input tensor is missing, malformed or does not fit the model."""


class OutputExistsError(EdgeInferError):
    """The output exists and --force was not given, or the output would overwrite the input."""


class UnsupportedError(EdgeInferError):
    """An architecture, format, task or device that edgeinfer does not handle."""


class ProviderUnavailableError(EdgeInferError):
    """A requested execution provider is not installed or refused the model; `missing` names the
    providers that are not installed, with the package of each ("" when one refused the model)."""

    def __init__(self, message: str, missing: str = "") -> None:
        super().__init__(message)
        self.missing = missing


class NoTargetError(EdgeInferError):
    """What was asked needs the device, and the device is not here (latency of a board not on the
    desk): nothing can be chosen, as when no candidate meets the budgets (exit 1)."""

    exit_code = 1


class BackendError(EdgeInferError):
    """ONNX Runtime, PyTorch or llama.cpp failed on a valid request."""


class MissingDependencyError(EdgeInferError):
    """An optional package is needed; the message carries the install command."""

    def __init__(self, package: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs the package {package!r}: pip install {package}")
        self.package = package


class ValidationError(EdgeInferError):
    """An exported or compressed model disagrees with its source; every mismatch is listed."""

    def __init__(self, what: str, mismatches: list[str]) -> None:
        self.mismatches = list(mismatches)
        lines = "; ".join(self.mismatches)
        super().__init__(f"{what}: {len(self.mismatches)} mismatch(es): {lines}")


_cli_names: dict[str, str] | None = None  # None: Python spelling; else field -> flag overrides


@contextlib.contextmanager
def cli_option_names(renamed: dict[str, str]) -> Iterator[None]:
    """Inside, `option()` spells flags: `--name-with-dashes`, or `renamed[name]` where the flag
    differs from the field (the CLI runs each command inside this)."""
    global _cli_names
    before, _cli_names = _cli_names, dict(renamed)
    try:
        yield
    finally:
        _cli_names = before


def option(name: str, value: object = None) -> str:
    """How an error message names an option (a config field or keyword argument): for Python
    callers `eval_data`, `force=True`, `method='static'`; on the command line `--eval-data`,
    `--force`, `--method static`."""
    if _cli_names is None:
        return name if value is None else f"{name}={value!r}"
    flag = _cli_names.get(name, "--" + name.replace("_", "-"))
    return flag if value is None or value is True else f"{flag} {value}"


def refuse_options(given: Mapping[str, object], applies_to: str, this: str) -> None:
    """Options a user gave that would do nothing for this input are refused (exit 2), naming what
    they apply to, instead of being ignored with exit 0."""
    names = [option(k) for k, v in given.items() if v not in (None, False, [], ())]
    if names:
        verb = "applies" if len(names) == 1 else "apply"
        raise ConfigError(f"{', '.join(names)} {verb} to {applies_to}, not to {this}")


E = TypeVar("E", bound=StrEnum)


def parse_choice(enum: type[E], value: str, what: str) -> E:
    """Parse a user-given name into a StrEnum member, or fail listing the valid names."""
    try:
        return enum(value)
    except ValueError:
        lowered = {m.value.lower(): m for m in enum}
        if value.lower() in lowered:
            return lowered[value.lower()]
        valid = ", ".join(m.value for m in enum)
        raise ConfigError(f"unknown {what} {value!r}; valid: {valid}") from None
