"""OpenVINO runner: an exported ONNX model compiled by OpenVINO for one of its devices (CPU, GPU,
NPU), reporting the device and the inference precision OpenVINO really chose.

OpenVINO reads the ONNX file directly. On a CPU with BF16 (AVX512-BF16, AMX) its default is to
run float layers in BF16, so the precision is always read back from the compiled model, never
assumed; `precision` asks for one (f32, bf16, f16) and is refused where the device lacks it,
unless the caller allows the fallback (said and recorded). A QDQ model (NNCF's INT8) runs its
quantized layers in INT8 and the rest in that precision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeinfer.core.errors import BackendError, InputError, MissingDependencyError, ProviderUnavailableError, option
from edgeinfer.core.formats import load_onnx
from edgeinfer.core.limits import check_threads
from edgeinfer.core.model_kind import ModelKind
from edgeinfer.core.stdio import quiet_native
from edgeinfer.runtime import Backend, ProviderReport, Target, register_backend
from edgeinfer.runtime.feeds import check_feeds

log = logging.getLogger(__name__)

# OpenVINO's element types as ONNX Runtime names them, so every runner describes inputs alike.
_TYPES = {
    "f32": "tensor(float)", "f16": "tensor(float16)", "bf16": "tensor(bfloat16)", "f64": "tensor(double)",
    "i64": "tensor(int64)", "i32": "tensor(int32)", "i8": "tensor(int8)", "u8": "tensor(uint8)",
    "boolean": "tensor(bool)",
}  # fmt: skip
# The precisions a caller may ask for, and the capability OpenVINO's device must list for each.
PRECISIONS = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}
DEVICES = ("CPU", "GPU", "NPU")


def _ov():
    try:
        import openvino
    except ImportError as e:
        raise MissingDependencyError("openvino", "running models on OpenVINO") from e
    return openvino


def openvino_version() -> str | None:
    """The installed OpenVINO's version (2026.4.1), or None."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__.split("-")[0]


def device_capabilities(device: str = "CPU") -> list[str]:
    """What OpenVINO's `device` here can run fast (FP32, BF16, INT8, FP16, ...); empty when
    OpenVINO or the device is not here."""
    try:
        core = _ov().Core()
        return [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]
    except Exception:  # noqa: BLE001 - no OpenVINO, or no such device: nothing it can run
        return []


@dataclass(frozen=True)
class TensorSpec:
    """An input as ONNX Runtime describes one: name, shape (an int per fixed axis, "?" otherwise), type."""

    name: str
    shape: list[int | str]
    type: str


class OpenVinoRunner:
    """One model compiled by OpenVINO; `report` names the device and the precision it runs in."""

    def __init__(
        self,
        model: Path,
        *,
        device: str = "CPU",
        precision: str | None = None,
        threads: int | None = None,
        allow_fallback: bool = False,
    ) -> None:
        ov = _ov()
        self.path = Path(model)
        if not self.path.is_file():
            raise InputError(f"model {self.path} does not exist")
        threads = check_threads(threads)
        if device not in DEVICES:
            raise InputError(f"OpenVINO device {device!r} is not one of {', '.join(DEVICES)}")
        if precision is not None and precision not in PRECISIONS:
            raise InputError(f"OpenVINO precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        core = ov.Core()
        fallbacks: list[str] = []
        here = [d.split(".")[0] for d in core.available_devices]
        requested = f"OpenVINO:{device}"
        if device not in here:
            why = f"OpenVINO {openvino_version()} has no {device} device on this machine (it has: {', '.join(here)})"
            if not allow_fallback:
                raise ProviderUnavailableError(
                    f"{why}; pass {option('allow_fallback', True)} to run on its CPU", missing=requested
                )
            log.warning(f"fallback: {why}; running on its CPU")
            fallbacks.append(f"{requested} unavailable")
            device = "CPU"
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        if precision is not None:
            caps = [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]
            if PRECISIONS[precision] not in caps:
                why = f"OpenVINO's {device} here has no {precision} (it has: {', '.join(caps)})"
                if not allow_fallback:
                    raise ProviderUnavailableError(
                        f"{why}; pass {option('allow_fallback', True)} to run in f32",
                        missing=f"{requested} {precision}",
                    )
                log.warning(f"fallback: {why}; running in f32")
                fallbacks.append(f"{precision} unavailable")
                precision = "f32"
            config["INFERENCE_PRECISION_HINT"] = precision
        # OpenVINO tries every frontend it has on a file (TensorFlow's prints to C stderr): a file
        # that is not ONNX is refused here first, in one line, as ONNX Runtime's loader does.
        load_onnx(self.path)
        try:
            with quiet_native():
                graph = core.read_model(str(self.path))
                self.compiled = core.compile_model(graph, device, config)
        except Exception as e:
            msg = " ".join(str(e).split())[-300:] or type(e).__name__
            raise BackendError(f"OpenVINO could not compile {self.path.name} for {device}: {msg}") from e
        self.device = device
        # What OpenVINO chose, read back: bf16 on a BF16 CPU unless f32 was asked for.
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS")) if device == "CPU" else None
        self._request = self.compiled.create_infer_request()
        self._outputs = [o.get_any_name() for o in self.compiled.outputs]
        used = f"OpenVINO:{device} ({self.precision}{f', {self.threads} threads' if self.threads else ''})"
        self.report = ProviderReport([requested], [used], fallbacks)

    @property
    def inputs(self) -> list[TensorSpec]:
        specs = []
        for port in self.compiled.inputs:
            shape: list[int | str] = [d.get_length() if not d.is_dynamic else "?" for d in port.get_partial_shape()]
            kind = port.get_element_type().get_type_name()
            specs.append(TensorSpec(port.get_any_name(), shape, _TYPES.get(kind, f"tensor({kind})")))
        return specs

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def check_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return check_feeds(self.inputs, feeds, self.path.name)

    def run(self, feeds: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        if check:
            feeds = self.check_inputs(feeds)
        try:
            result = self._request.infer(feeds)
        except Exception as e:
            raise BackendError(f"OpenVINO failed running {self.path.name}: {str(e).strip().splitlines()[0]}") from e
        return {name: np.array(result[i]) for i, name in enumerate(self._outputs)}

    def timer(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        """The cheapest call that runs `feeds` (checked once), for timing."""
        feeds = self.check_inputs(feeds)
        request = self.compiled.create_infer_request()
        return lambda: request.infer(feeds)

    def close(self) -> None:
        self.__dict__.pop("_request", None)
        self.__dict__.pop("compiled", None)


def _load(path: Path, target: Target) -> OpenVinoRunner:
    options = dict(target.options)
    return OpenVinoRunner(
        path,
        device=str(options.get("device", "CPU")),
        precision=options.get("precision"),
        threads=target.threads,
        allow_fallback=target.allow_fallback,
    )


register_backend(
    Backend(
        "openvino",
        (ModelKind.ONNX,),
        frozenset({"threads", "allow_fallback"}),
        _load,
        options=frozenset({"device", "precision"}),
        rank=10,  # ONNX models load on ONNX Runtime unless Target.backend names this one
    )
)
