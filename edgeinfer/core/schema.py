"""Typed schemas for the files edgeinfer reads but did not just write (bundle manifests, measurement
cache entries): a frozen dataclass whose field types are checked, value by value, before anything
uses them.

`Record.parse(data, where)` takes the parsed JSON/TOML and returns the record, or raises one
InputError naming the file and the field: a string where a number belongs, a 5,000-digit integer,
NaN, a negative size, an unknown key. What a record holds is then exactly what its type says, so
the code that reads it needs no `isinstance` of its own and a hostile file cannot reach a
TypeError deep in a pipeline (exit 3) instead of a clear refusal (exit 2).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from typing import Any, ClassVar, Self

from edgeinfer.core.errors import ConfigError, InputError

SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # a sha256 as edgeinfer writes it

# Integers in a file are counts, sizes, token ids or thread numbers: far below this.
MAX_INT = 1 << 53
MAX_STRING = 4096
MAX_ITEMS = 100_000


def conform(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against the type `hint` (str, int, float, bool, None, Literal, list[X],
    tuple[X, ...], dict[str, X], a Record, and unions of them); lists become tuples for tuple hints."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        if len(options) == 1:
            return conform(value, options[0], where)
        errors = []
        for option in options:
            try:
                return conform(value, option, where)
            except InputError as e:
                errors.append((option, e))
        for option, e in errors:  # an object with a record's keys: that record's own complaint
            if isinstance(value, dict) and isinstance(option, type) and issubclass(option, Record):
                if set(value) <= {f.name for f in dataclasses.fields(option)}:
                    raise e
        raise InputError(f"{where} is {_shown(value)}; expected {' or '.join(_name(o) for o in options)}")
    if origin is typing.Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise InputError(f"{where} is {_shown(value)}; expected one of {', '.join(map(repr, args))}")
    if hint is type(None) or hint is None:
        if value is None:
            return None
        raise InputError(f"{where} is {_shown(value)}; expected nothing (null)")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{where} is {_shown(value)}; expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool) and -MAX_INT <= value <= MAX_INT:
            return value
        raise InputError(f"{where} is {_shown(value)}; expected an integer of at most {MAX_INT}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= 1e300:
            if math.isfinite(value):
                return float(value)
        raise InputError(f"{where} is {_shown(value)}; expected a finite number")
    if hint is str:
        if isinstance(value, str) and len(value) <= MAX_STRING:
            return value
        raise InputError(f"{where} is {_shown(value)}; expected a string of at most {MAX_STRING} characters")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)) or len(value) > MAX_ITEMS:
            raise InputError(f"{where} is {_shown(value)}; expected a list")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise InputError(f"{where} has {len(value)} items; expected {len(args)}")
            return tuple(conform(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [conform(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict) or len(value) > MAX_ITEMS:
            raise InputError(f"{where} is {_shown(value)}; expected an object")
        key_hint, item = args if args else (str, Any)
        return {conform(k, key_hint, f"{where} key"): conform(v, item, f"{where}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.parse(value, where)
    raise TypeError(f"conform() has no rule for {hint!r}")  # a schema written wrongly, not bad input


def _shown(value: Any) -> str:
    if isinstance(value, int) and abs(value) >= 10**30:  # str() of a 5,000-digit integer raises
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of a file schema: declare fields with types (and defaults for optional keys); add
    range checks in `check()`, raising InputError. Unknown keys are refused unless `open_keys`."""

    open_keys: ClassVar[bool] = False  # True: keys the schema does not name are kept out, not refused

    @classmethod
    def parse(cls, data: Any, where: str) -> Self:
        if not isinstance(data, dict):
            raise InputError(f"{where} is {_shown(data)}; expected an object")
        hints = _hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown and not cls.open_keys:
            raise InputError(f"{where} has unknown key(s) {', '.join(map(str, unknown))[:200]}")
        values = {}
        for name, f in fields.items():
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise InputError(f"{where} has no {name!r}")
                continue
            values[name] = conform(data[name], hints[name], f"{where}.{name}")
        try:
            record = cls(**values)
        except ConfigError as e:  # a record that validates itself (search.Budgets): the file is bad input
            raise InputError(f"{where}: {e}") from None
        record.check(where)
        return record

    def check(self, where: str) -> None:
        """Raise InputError naming `where` and the field when a value is out of range."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
