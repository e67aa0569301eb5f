"""The base of every pass config: a frozen dataclass that validates itself and round-trips through
a plain dict (what sidecars and recipe files hold).

A subclass declares its fields with types; `PassConfig.__post_init__` turns strings into the
declared StrEnum members and lists into tuples (so a config read back from JSON or TOML equals
the one written), and the subclass adds its own range checks in `check()`. Errors name the
config field, which the CLI's options share.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from enum import Enum, StrEnum
from typing import Any, ClassVar, Self

from edgeinfer.core.errors import ConfigError, parse_choice


@dataclasses.dataclass(frozen=True)
class PassConfig:
    """Mixin for a pass's frozen config dataclass (see the module docstring)."""

    what: ClassVar[str] = "config"  # how errors name it: "quantization config", ...

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value, hint = getattr(self, f.name), hints.get(f.name)
            enum = _enum_in(hint)
            if isinstance(hint, type) and issubclass(hint, PassConfig) and isinstance(value, dict):
                object.__setattr__(self, f.name, hint.from_dict(value))  # a nested config, read back
            elif enum is not None and isinstance(value, str) and not isinstance(value, enum):
                object.__setattr__(self, f.name, parse_choice(enum, value, f.name))
            elif isinstance(value, list):
                object.__setattr__(self, f.name, _tuples(value))
            elif isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{self.what} field {f.name} is {value}; it must be a finite number")
        self.check()

    def check(self) -> None:
        """Raise ConfigError naming the field when a value is out of range (subclasses override)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML types: enums as their values, tuples as lists."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The config `to_dict` wrote; unknown keys are refused, naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.what} key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        missing = [n for n in required_fields(cls) if n not in data]
        if missing:
            raise ConfigError(f"the {cls.what} needs {', '.join(missing)}")
        return cls(**data)


def required_fields(cls: type) -> list[str]:
    """The fields of a config dataclass that have no default."""
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _enum_in(hint: Any) -> type[StrEnum] | None:
    """The StrEnum in a field's type (`Recipe`, `GgufType | None`), if any."""
    candidates = typing.get_args(hint) or (hint,)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, StrEnum)), None)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _plain(value: Any) -> Any:
    if isinstance(value, PassConfig):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
