"""Where a model runs: a device profile and the user's options, resolved once into a runtime
Target for the backend that loads the model.

The runtime takes plain values (edgeinfer.runtime.Target); the profile (devices) is read here, so
the two subsystems never import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeinfer.core.model_kind import ModelKind, model_kind
from edgeinfer.core.providers import Provider
from edgeinfer.runtime import Target, check_target


@dataclass(frozen=True)
class OnnxTarget:
    """Where an ONNX model runs: ONNX Runtime's execution providers in order of preference (None:
    the CPU) and intra-op threads; or, with runtime "openvino", OpenVINO's device and inference
    precision (None: OpenVINO's own choice, BF16 on a BF16 CPU) with those threads."""

    providers: list[Provider] | None = None
    threads: int | None = None
    runtime: str = "onnxruntime"
    ov_device: str = "CPU"
    precision: str | None = None

    @property
    def openvino(self) -> bool:
        return self.runtime == "openvino"

    def openvino_options(self) -> dict[str, str] | None:
        """OpenVINO's load options (device, precision), or None on ONNX Runtime."""
        if not self.openvino:
            return None
        return {"device": self.ov_device, **({"precision": self.precision} if self.precision else {})}

    def describe(self) -> str:
        if self.openvino:
            return f"OpenVINO {self.ov_device} {self.precision or '(its default precision)'}"
        return ", ".join(p.short for p in self.providers) if self.providers else "cpu"


# The pass that puts a model on OpenVINO in a recipe (pipelines/passes/use_openvino.py).
USE_OPENVINO = "use-openvino"


def engine_of(steps: list[tuple[str, dict[str, Any]]], where: OnnxTarget) -> OnnxTarget:
    """`where` moved onto OpenVINO when the recipe's last step says so (use-openvino: its device
    and precision, the threads kept), else `where` as it is: ONNX Runtime."""
    if not steps or steps[-1][0] != USE_OPENVINO:
        return where
    cfg = steps[-1][1]
    return OnnxTarget(None, where.threads, "openvino", str(cfg.get("device") or "CPU"), cfg.get("precision") or None)


def onnx_target(profile=None, providers: list[Provider] | None = None, threads: int | None = None) -> OnnxTarget:
    """Explicit providers and threads win over the profile's (with_profile); None means the runtime's default."""
    given = Target(tuple(providers) if providers else None, threads)
    merged = with_profile(given, profile, frozenset({"providers", "threads"}))
    return OnnxTarget(list(merged.providers) if merged.providers else None, merged.threads)


def resolve_target(model: Path | str, profile=None, given: Target = Target()) -> Target:
    """The Target `model` runs with: the user's options (`given`; one its backend would ignore is
    refused, exit 2), then the device profile's values for the fields that backend reads (its
    providers and threads; for llama.cpp its [llm] table), then the backend's defaults."""
    return with_profile(given, profile, check_target(model_kind(model), given).takes)


def with_profile(given: Target, profile, takes: frozenset[str]) -> Target:
    """`given` with the profile's values for the Target fields in `takes` that the user left unset:
    the one place a device profile and a user's options merge (llama_settings goes through it too)."""
    if profile is None:
        return given
    out = given
    if "providers" in takes and not given.providers:
        out = replace(out, providers=tuple(profile.providers))
    if "threads" in takes and given.threads is None:
        out = replace(out, threads=profile.threads)
    if "n_ctx" in takes:  # llama.cpp: the profile's [llm] table (devices.LlmDefaults)
        llm = profile.llm
        out = replace(
            out,
            n_ctx=given.n_ctx or llm.n_ctx,
            gpu_layers=given.gpu_layers if given.gpu_layers is not None else llm.n_gpu_layers,
            kv_type=given.kv_type or llm.kv_type,
            repack=given.repack if given.repack is not None else llm.repack,
        )
    return out


def absent_accelerators(profile) -> list[Provider]:
    """The profile's execution providers, other than the CPU, that this machine does not have: a
    device that is not here (a board not on the desk, a GPU profile on a CPU machine). Empty when
    the device's providers are all here, or for no profile (this machine)."""
    from edgeinfer.runtime.ort import available_providers

    if profile is None:
        return []
    here = set(available_providers())
    return [p for p in dict.fromkeys(profile.providers) if p is not Provider.CPU and p.value not in here]


def describe_target(target: Target) -> str:
    """The options a model is loaded with, in words ("context 1024, threads 2, GPU layers 0");
    what is not set is the runtime's default."""
    labels = {"providers": "providers", "threads": "threads", "n_ctx": "context", "gpu_layers": "GPU layers",
              "kv_type": "KV cache", "repack": "repacked weights"}  # fmt: skip
    parts = []
    for name, label in labels.items():
        value = getattr(target, name)
        if value is None or value == ():
            continue
        if name == "providers":
            value = ", ".join(str(p) for p in value)
        elif name == "repack":
            value = "on" if value else "off"
        parts.append(f"{label} {value}")
    if target.allow_fallback:
        parts.append("CPU fallback allowed")
    return ", ".join(parts) or "the runtime's defaults"


def onnx_runner(path: Path, where: OnnxTarget | None = None, *, allow_fallback: bool = False, **options: Any) -> Any:
    """An ONNX model loaded through edgeinfer.runtime.load on `where`'s providers and threads
    (None: the CPU), with the backend's own switches (profile_first_run=False, ...); a model of
    another kind is refused."""
    from edgeinfer.runtime import load

    where = where or OnnxTarget()
    if where.openvino:  # ONNX Runtime's own switches (profile_first_run, ...) do not apply
        ov = where.openvino_options() or {}
        target = Target(None, where.threads, allow_fallback, backend="openvino").with_options(**ov)
        return load(path, target, expect=ModelKind.ONNX)
    chosen = tuple(where.providers) if where.providers else None
    return load(path, Target(chosen, where.threads, allow_fallback).with_options(**options), expect=ModelKind.ONNX)


def gguf_runner(path: Path, settings: Any, **options: Any) -> Any:
    """A GGUF LLM loaded through edgeinfer.runtime.load with these LlamaSettings and the backend's
    own switches (logits_all=True for scoring)."""
    from edgeinfer.runtime import load
    from edgeinfer.runtime.llama import target_from_settings

    return load(path, target_from_settings(settings).with_options(**options), expect=ModelKind.GGUF)
