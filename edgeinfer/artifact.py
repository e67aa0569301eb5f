"""An Artifact is a model file plus its JSON sidecar: where it came from and how good it was.

The sidecar `<file>.edgeinfer.json` records format, source, sha256, the chain of steps (with
their configs) that produced the file, and the validation figures measured when it was made.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgeinfer.errors import InputError, UnsupportedError
from edgeinfer.io import sha256_file, write_text_atomic

SIDECAR_SUFFIX = ".edgeinfer.json"
SCHEMA_VERSION = 1


class ModelFormat(StrEnum):
    ONNX = "onnx"
    GGUF = "gguf"

    @classmethod
    def of(cls, path: Path) -> ModelFormat:
        suffix = Path(path).suffix.lower()
        if suffix == ".onnx":
            return cls.ONNX
        if suffix == ".gguf":
            return cls.GGUF
        raise UnsupportedError(f"{path}: unknown model format {suffix!r}; expected .onnx or .gguf")


@dataclass
class Step:
    """One operation in an artifact's history: what ran, with which config, and what it measured."""

    op: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parent_sha256: str | None = None
    time: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    edgeinfer_version: str = field(default_factory=lambda: _version())


@dataclass
class Artifact:
    path: Path
    format: ModelFormat
    source: dict[str, Any]
    sha256: str
    steps: list[Step] = field(default_factory=list)
    # Extra facts a later command needs (the tokenizer folder, the task, input names ...).
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)

    @property
    def validation(self) -> dict[str, Any]:
        """The figures of the newest step that measured any."""
        for step in reversed(self.steps):
            if step.metrics:
                return step.metrics
        return {}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "file": self.path.name,
            "format": self.format.value,
            "sha256": self.sha256,
            "source": self.source,
            "meta": self.meta,
            "steps": [asdict(s) for s in self.steps],
            "machine": {"platform": platform.platform(), "python": platform.python_version()},
        }

    def save(self) -> Path:
        write_text_atomic(self.sidecar, json.dumps(self.to_json(), indent=2, default=str) + "\n")
        return self.sidecar

    def derive(self, path: Path, step: Step, meta: dict[str, Any] | None = None) -> Artifact:
        """A new artifact made from this one by `step`; the history carries over."""
        step.parent_sha256 = self.sha256
        return Artifact(
            path=Path(path),
            format=ModelFormat.of(path),
            source=dict(self.source),
            sha256=sha256_file(path),
            steps=[*self.steps, step],
            meta={**self.meta, **(meta or {})},
        )


def sidecar_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def new_artifact(path: Path, source: dict[str, Any], step: Step, meta: dict[str, Any] | None = None) -> Artifact:
    path = Path(path)
    return Artifact(path, ModelFormat.of(path), source, sha256_file(path), [step], dict(meta or {}))


def load_artifact(path: Path) -> Artifact:
    """Read a model and its sidecar; a model without one gets a minimal, unsaved record."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model {path} does not exist")
    fmt = ModelFormat.of(path)
    side = sidecar_path(path)
    sha = sha256_file(path)
    if not side.exists():
        return Artifact(path, fmt, {"kind": "file", "path": str(path)}, sha)
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"sidecar {side} is not valid JSON ({e}); delete it or re-export the model") from e
    steps = [Step(**s) for s in data.get("steps", [])]
    art = Artifact(path, fmt, data.get("source", {}), sha, steps, data.get("meta", {}))
    if data.get("sha256") and data["sha256"] != sha:
        # The model changed after the sidecar was written: its figures no longer describe it.
        art.meta["stale_sidecar"] = True
    return art


def _version() -> str:
    from edgeinfer import __version__

    return __version__
