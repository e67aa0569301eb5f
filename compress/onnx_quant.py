"""Post-training quantization of ONNX models on onnxruntime.quantization: the config, the method
registry, and the one entry point `quantize_onnx`.

Each method is one file in `compress/onnx_methods/` that registers itself with `@register_method`
(dynamic INT8, static QDQ with calibration and the QNN recipe, int4 MatMulNBits, fp16); adding a
method is one new file there plus its test.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, ClassVar

from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import BackendError, ConfigError, InputError, option
from edgeinfer.core.io import scratch_dir
from edgeinfer.core.registry import Registry
from edgeinfer.core.stdio import quiet_native


class CalibMethod(StrEnum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class QType(StrEnum):
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    UINT16 = "uint16"


class Recipe(StrEnum):
    GENERIC = "generic"
    QNN = "qnn"  # onnxruntime's QNN-compatible QDQ configuration (Hexagon HTP)


@dataclass(frozen=True)
class OnnxQuantConfig(PassConfig):
    """How to quantize an ONNX model. Validated when made; round-trips through a plain dict (sidecars).

    Args:
        method: a registered method name (`methods()`): dynamic, static, int4, fp16, ...
        calibration: minmax, entropy or percentile (static only).
        activation_type, weight_type: integer types of activations and weights (static / dynamic).
        per_channel: weight scales per output channel; symmetric: symmetric activation ranges.
        reduce_range: 7-bit weights, for x86 CPUs without VNNI.
        exclude_nodes, exclude_op_types: kept in float.
        block_size: int4 weights per quantization block (a power of two, 16 ... 4096).
        calib_window: calibration batches fed to ONNX Runtime's collectors at a time.
        recipe: generic, or qnn (onnxruntime's QNN-compatible QDQ configuration).
        extra: onnxruntime extra_options passed through unchanged (static), as (name, value) pairs
            (a dict is taken too); kept as a sorted tuple, so the config stays hashable.
    """

    method: str
    calibration: CalibMethod = CalibMethod.MINMAX
    activation_type: QType = QType.UINT8
    weight_type: QType = QType.INT8
    per_channel: bool = True
    symmetric: bool = False
    # x86 CPUs without VNNI saturate in u8s8 dot products; 7-bit weights avoid it.
    reduce_range: bool = False
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    block_size: int = 128
    calib_window: int = 16
    recipe: Recipe = Recipe.GENERIC
    extra: tuple[tuple[str, Any], ...] = ()

    what: ClassVar[str] = "quantization config"

    def check(self) -> None:
        extra: Any = self.extra
        if isinstance(extra, dict):  # a dict as written by hand, or an older sidecar's {}
            object.__setattr__(self, "extra", tuple(sorted(extra.items())))
        elif not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in extra):
            raise ConfigError("extra must be onnxruntime extra_options as {name: value} or (name, value) pairs")
        known = methods()
        if self.method not in known:
            raise ConfigError(f"unknown quantization method {self.method!r}; valid: {', '.join(sorted(known))}")
        if self.block_size < 16 or self.block_size > 4096 or self.block_size & (self.block_size - 1):
            raise ConfigError(f"block_size {self.block_size} must be a power of two from 16 to 4096")
        if self.calib_window < 1:
            raise ConfigError(f"calib_window {self.calib_window} must be at least 1")


@dataclass(frozen=True)
class QuantJob:
    """What a method gets: a private copy of the model (path and loaded proto), where to write, the
    config, calibration batches (static), and the node names to keep in float."""

    model_path: Path
    model: Any
    output: Path
    config: OnnxQuantConfig
    calib_batches: list | None
    excluded: list[str]


# Bits per weight of what each precision makes: optimize's size objective measures small ones first.
PRECISION_BITS = {"int4": 4, "int8": 8, "fp16": 16, "bf16": 16, "fp32": 32}


@dataclass(frozen=True)
class SearchVariant:
    """One candidate a method offers `optimize`: its name in the search and the config fields it
    sets (over the device's quantization defaults), e.g. ("int8-dynamic-per-tensor", per_channel=False)."""

    name: str
    overrides: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class QuantMethod:
    """A registered method and what `optimize` needs to search it.

    Args:
        precision: what it produces (int8, int4, fp16): searched only on a profile that lists it.
        needs_calibration: it takes calibration data (static QDQ).
        search: the candidates it offers optimize (none: quantize only).
        after_graph: also searched after the graph-fusion pass on transformers.
        transformers: suits transformer encoders (ONNX Runtime's fused attention graphs).
    """

    name: str
    run: Callable[[QuantJob], dict[str, Any]]
    precision: str
    needs_calibration: bool
    search: tuple[SearchVariant, ...] = ()
    after_graph: bool = True
    transformers: bool = True

    @property
    def bits(self) -> int:
        return PRECISION_BITS.get(self.precision, 32)


_METHODS: Registry[QuantMethod] = Registry(
    "ONNX quantization method", "edgeinfer.compress.onnx_methods", lambda a, b: a.run is b.run
)


def register_method(
    name: str,
    *,
    precision: str,
    needs_calibration: bool = False,
    search: tuple[tuple[str, dict[str, Any]], ...] = (),
    after_graph: bool = True,
    transformers: bool = True,
):
    """Register `fn(job) -> facts` as the quantization method `name` (facts go into the sidecar).

    `search` lists the candidates `optimize` builds with it, as (name, config overrides); with the
    other keywords that is all optimize needs, so a new method file is searched with no other edit.
    """

    def register(fn: Callable[[QuantJob], dict[str, Any]]):
        variants = tuple(SearchVariant(n, tuple(sorted(o.items()))) for n, o in search)
        _METHODS.add(name, QuantMethod(name, fn, precision, needs_calibration, variants, after_graph, transformers))
        return fn

    return register


def methods() -> dict[str, QuantMethod]:
    """Every registered method: each module of compress/onnx_methods/ registers its own on import."""
    return _METHODS.all()


def ort_qtype(t: QType):
    from onnxruntime.quantization import QuantType

    return {
        QType.INT8: QuantType.QInt8,
        QType.UINT8: QuantType.QUInt8,
        QType.INT16: QuantType.QInt16,
        QType.UINT16: QuantType.QUInt16,
    }[t]


def ort_calibration(m: CalibMethod):
    from onnxruntime.quantization import CalibrationMethod

    return {
        CalibMethod.MINMAX: CalibrationMethod.MinMax,
        CalibMethod.ENTROPY: CalibrationMethod.Entropy,
        CalibMethod.PERCENTILE: CalibrationMethod.Percentile,
    }[m]


QUANT_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "QLinearConv",
    "QLinearMatMul",
    "MatMulNBits",
    "DynamicQuantizeMatMul",
}


def check_not_quantized(model) -> None:
    ops = {n.op_type for n in model.graph.node} & QUANT_OPS
    if ops:
        raise InputError(
            f"the model is already quantized (it has {', '.join(sorted(ops))} nodes); quantize its float parent instead"
        )


def excluded_nodes(model, cfg: OnnxQuantConfig) -> list[str]:
    names = {n.name for n in model.graph.node}
    unknown = [n for n in cfg.exclude_nodes if n not in names]
    if unknown:
        raise ConfigError(f"exclude {unknown[0]!r} matches no node name or op type in the model")
    by_type = [n.name for n in model.graph.node if n.op_type in cfg.exclude_op_types]
    return [*cfg.exclude_nodes, *by_type]


def split_excludes(model, items: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`--exclude` takes node names and op types; an op type is any name that is not a node."""
    names = {n.name for n in model.graph.node}
    ops = {n.op_type for n in model.graph.node}
    bad = [i for i in items if i not in names and i not in ops]
    if bad:
        raise ConfigError(
            f"{option('exclude_nodes')} {bad[0]!r} matches no node name or op type in the model "
            f"(op types here: {', '.join(sorted(ops))})"
        )
    return tuple(i for i in items if i in names), tuple(i for i in items if i not in names)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime.quantization logs hundreds of INFO lines on the root logger (int4: one per MatMul);
    silence them for the duration of the call only, and put the levels back."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def quantize_onnx(model_path: Path, output: Path, cfg: OnnxQuantConfig, calib_batches=None) -> dict[str, Any]:
    """Write the quantized model to `output`; return facts to record (nodes excluded, window ...).

    onnxruntime.quantization writes work files (`<model>-inferred.onnx`, augmented models) beside
    the model it is given, so it is given a private copy: the user's folder is never written.
    """
    with scratch_dir("quant") as work, _quiet_quantizer(), quiet_native():
        private = Path(work) / "model.onnx"
        model = _private_copy(model_path, private)
        check_not_quantized(model)
        excluded = excluded_nodes(model, cfg)
        job = QuantJob(private, model, Path(output), cfg, calib_batches, excluded)
        try:
            facts = methods()[cfg.method].run(job)
        except (InputError, ConfigError):
            raise
        except Exception as e:
            raise BackendError(
                f"onnxruntime.quantization failed ({cfg.method}): {type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}"
            ) from e
        return {"nodes_excluded": excluded, **facts}


def _private_copy(model_path: Path, dest: Path):
    """Load the model (with its external data) and save it as one self-contained file in `dest`."""
    import onnx

    model = onnx.load(str(model_path))
    large = model.ByteSize() > 1_800_000_000
    onnx.save(model, str(dest), save_as_external_data=large, location=dest.name + ".data" if large else None)
    return model
