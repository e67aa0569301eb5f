"""Post-training quantization of ONNX models on onnxruntime.quantization.

dynamic (INT8 weights, activations quantized at run time), static (QDQ with calibration),
int4 (weight-only MatMulNBits blocks) and fp16; plus the QNN recipe for Qualcomm NPUs.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import BackendError, ConfigError, InputError
from edgeinfer.core.stdio import quiet_native


class Method(StrEnum):
    DYNAMIC = "dynamic"
    STATIC = "static"
    INT4 = "int4"
    FP16 = "fp16"


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
class OnnxQuantConfig:
    method: Method
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
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _qtype(t: QType):
    from onnxruntime.quantization import QuantType

    return {QType.INT8: QuantType.QInt8, QType.UINT8: QuantType.QUInt8,
            QType.INT16: QuantType.QInt16, QType.UINT16: QuantType.QUInt16}[t]


def _calib(m: CalibMethod):
    from onnxruntime.quantization import CalibrationMethod

    return {CalibMethod.MINMAX: CalibrationMethod.MinMax, CalibMethod.ENTROPY: CalibrationMethod.Entropy,
            CalibMethod.PERCENTILE: CalibrationMethod.Percentile}[m]


QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
             "QLinearConv", "QLinearMatMul", "MatMulNBits", "DynamicQuantizeMatMul"}


def check_not_quantized(model) -> None:
    ops = {n.op_type for n in model.graph.node} & QUANT_OPS
    if ops:
        raise InputError(f"the model is already quantized (it has {', '.join(sorted(ops))} nodes); "
                         "quantize its float parent instead")


def _excluded_nodes(model, cfg: OnnxQuantConfig) -> list[str]:
    names = {n.name for n in model.graph.node}
    unknown = [n for n in cfg.exclude_nodes if n not in names]
    if unknown:
        raise ConfigError(f"--exclude {unknown[0]!r} matches no node name or op type in the model")
    by_type = [n.name for n in model.graph.node if n.op_type in cfg.exclude_op_types]
    return [*cfg.exclude_nodes, *by_type]


def split_excludes(model, items: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`--exclude` takes node names and op types; an op type is any name that is not a node."""
    names = {n.name for n in model.graph.node}
    ops = {n.op_type for n in model.graph.node}
    bad = [i for i in items if i not in names and i not in ops]
    if bad:
        raise ConfigError(f"--exclude {bad[0]!r} matches no node name or op type in the model "
                          f"(op types here: {', '.join(sorted(ops))})")
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
    with tempfile.TemporaryDirectory(prefix="edgeinfer-quant-") as work, _quiet_quantizer(), quiet_native():
        private = Path(work) / "model.onnx"
        model = _private_copy(model_path, private)
        return _quantize(private, model, output, cfg, calib_batches)


def _private_copy(model_path: Path, dest: Path):
    """Load the model (with its external data) and save it as one self-contained file in `dest`."""
    import onnx

    model = onnx.load(str(model_path))
    large = model.ByteSize() > 1_800_000_000
    onnx.save(model, str(dest), save_as_external_data=large, location=dest.name + ".data" if large else None)
    return model


def _quantize(model_path: Path, model, output: Path, cfg: OnnxQuantConfig, calib_batches) -> dict[str, Any]:
    import onnx

    check_not_quantized(model)
    excluded = _excluded_nodes(model, cfg)
    facts: dict[str, Any] = {"nodes_excluded": excluded}
    try:
        if cfg.method is Method.DYNAMIC:
            from onnxruntime.quantization import quantize_dynamic

            quantize_dynamic(str(model_path), str(output), per_channel=cfg.per_channel,
                             reduce_range=cfg.reduce_range, weight_type=_qtype(cfg.weight_type),
                             nodes_to_exclude=excluded, extra_options={"MatMulConstBOnly": True})
        elif cfg.method is Method.STATIC:
            facts.update(_static(model_path, output, cfg, calib_batches, excluded))
        elif cfg.method is Method.INT4:
            from onnxruntime.quantization.matmul_nbits_quantizer import (
                MatMulNBitsQuantizer,
            )

            quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=cfg.block_size, is_symmetric=cfg.symmetric,
                                             nodes_to_exclude=excluded, accuracy_level=4)
            quantizer.process()
            n = sum(1 for node in quantizer.model.model.graph.node if node.op_type == "MatMulNBits")
            if n == 0:
                raise InputError(f"{model_path.name} has no MatMul with a constant weight that int4 can quantize "
                                 "(int4 is weight-only for MatMul; try --method static or dynamic)")
            facts["matmulnbits_nodes"] = n
            quantizer.model.save_model_to_file(str(output), use_external_data_format=False)
        elif cfg.method is Method.FP16:
            from onnxruntime.transformers.float16 import convert_float_to_float16

            half = convert_float_to_float16(model, keep_io_types=True, node_block_list=excluded or None)
            onnx.save(half, str(output))
    except (InputError, ConfigError):
        raise
    except Exception as e:
        raise BackendError(f"onnxruntime.quantization failed ({cfg.method}): {type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}") from e
    return facts


def _entropy_ranges(model_path: Path, reader, window: int, symmetric: bool) -> Path:
    """Entropy (KL) calibration with 2048 histogram bins, saved as a calibration cache for quantize_static.

    quantize_static builds its entropy calibrator with 128 bins for 128 quantized bins, which
    leaves nothing to clip: its ranges came out identical to minmax (a test compares them).
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    work = model_path.parent
    calibrator = create_calibrator(model_path, None, augmented_model_path=str(work / "entropy-augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"num_bins": 2048, "num_quantized_bins": 128,
                                                  "symmetric": symmetric})
    for start in range(0, len(reader), window):
        reader.set_range(start, start + window)
        calibrator.collect_data(reader)
    reader.set_range(0, len(reader))
    cache = work / "entropy-ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


def _static(model_path: Path, output: Path, cfg: OnnxQuantConfig, batches, excluded: list[str]) -> dict[str, Any]:

    from onnxruntime.quantization import QuantFormat, quantize, quantize_static

    from edgeinfer.compress.calibration import BatchReader, window_size

    if not batches:
        raise InputError("static quantization needs calibration data: pass --calib (an .npz, a folder of them, "
                         "a .txt of sentences, or package.module:function)")
    reader = BatchReader(batches)
    window = window_size(len(reader), cfg.calib_window)
    if cfg.recipe is Recipe.QNN:
        from onnxruntime.quantization.execution_providers.qnn import (
            get_qnn_qdq_config,
            qnn_preprocess_model,
        )

        with tempfile.TemporaryDirectory(prefix="edgeinfer-qnn-") as tmp:
            pre = Path(tmp) / "pre.onnx"
            source = pre if qnn_preprocess_model(str(model_path), str(pre)) else model_path
            qcfg = get_qnn_qdq_config(str(source), reader, calibrate_method=_calib(cfg.calibration),
                                      activation_type=_qtype(cfg.activation_type),
                                      weight_type=_qtype(cfg.weight_type), per_channel=cfg.per_channel,
                                      nodes_to_exclude=excluded or None, stride=window)
            quantize(str(source), str(output), qcfg)
        return {"calibration_batches": len(reader), "calibration_window": window, "recipe": "qnn"}
    cache = None
    if cfg.calibration is CalibMethod.ENTROPY:
        cache = _entropy_ranges(model_path, reader, window, cfg.symmetric)
    quantize_static(
        str(model_path), str(output), reader, quant_format=QuantFormat.QDQ, calibration_cache_path=cache,
        per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
        activation_type=_qtype(cfg.activation_type), weight_type=_qtype(cfg.weight_type),
        nodes_to_exclude=excluded, calibrate_method=_calib(cfg.calibration),
        extra_options={"CalibStridedMinMax": window, "ActivationSymmetric": cfg.symmetric,
                       "WeightSymmetric": True if cfg.weight_type in (QType.INT8, QType.INT16) else cfg.symmetric,
                       **cfg.extra})
    return {"calibration_batches": len(reader), "calibration_window": window}
