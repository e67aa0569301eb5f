"""An Artifact is a model file plus its JSON sidecar: where it came from and how good it was.

The sidecar `<file>.edgeinfer.json` records format, source, sha256, the chain of steps (with
their configs) that produced the file, and the validation figures measured when it was made.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import InputError, UnsupportedError
from edgeinfer.core.formats import read_json_object
from edgeinfer.core.io import sha256_file, write_text_atomic

log = logging.getLogger(__name__)

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


def copy_with_sidecar(model: Path, dest: Path) -> None:
    """Copy a model file to `dest`, and its sidecar (when it has one) beside it."""
    import shutil

    shutil.copyfile(model, dest)
    if sidecar_path(model).exists():
        shutil.copyfile(sidecar_path(model), sidecar_path(dest))


def new_artifact(path: Path, source: dict[str, Any], step: Step, meta: dict[str, Any] | None = None) -> Artifact:
    path = Path(path)
    return Artifact(path, ModelFormat.of(path), source, sha256_file(path), [step], dict(meta or {}))


def load_artifact(path: Path) -> Artifact:
    """Read a model and its sidecar; a model without one gets a minimal, unsaved record.

    A sidecar is data that travels with a model: anything malformed in it is one InputError, and
    a sidecar whose sha256 no longer matches the model is flagged and logged as a warning.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"model {path} is a directory, not a model file")
    if not path.is_file():
        raise InputError(f"model {path} does not exist")
    fmt = ModelFormat.of(path)
    side = sidecar_path(path)
    sha = sha256_file(path)
    if not side.exists():
        return Artifact(path, fmt, {"kind": "file", "path": str(path)}, sha)
    hint = "delete it or re-export the model"
    data = read_json_object(side, "sidecar", hint)
    source, meta, raw_steps = data.get("source", {}), data.get("meta", {}), data.get("steps", [])
    if not isinstance(source, dict) or not isinstance(meta, dict) or not isinstance(raw_steps, list):
        raise InputError(f"sidecar {side}: 'source' and 'meta' must be objects and 'steps' a list; {hint}")
    allowed = {f.name for f in fields(Step)}
    steps = []
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, dict) or not isinstance(raw.get("op"), str) or set(raw) - allowed:
            raise InputError(f"sidecar {side}: step {i} is not a step record ({', '.join(sorted(allowed))}); {hint}")
        if not isinstance(raw.get("config", {}), dict) or not isinstance(raw.get("metrics", {}), dict):
            raise InputError(f"sidecar {side}: step {i} has a config or metrics that is not an object; {hint}")
        steps.append(Step(**raw))
    art = Artifact(path, fmt, source, sha, steps, meta)
    if data.get("sha256") and data["sha256"] != sha:
        # The model changed after the sidecar was written: its figures no longer describe it.
        art.meta["stale_sidecar"] = True
        log.warning(
            f"{path.name} changed after its sidecar was written (sha256 differs): the sidecar's source, "
            "steps and figures describe another file"
        )
    return art


def _version() -> str:
    from edgeinfer import __version__

    return __version__
