"""Static INT8 (QDQ): activation ranges calibrated on data; onnxruntime's QNN recipe for Hexagon NPUs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeinfer.compress.onnx_quant import (
    CalibMethod,
    QType,
    QuantJob,
    Recipe,
    ort_calibration,
    ort_qtype,
    register_method,
)
from edgeinfer.core.errors import InputError, option
from edgeinfer.core.io import scratch_dir


def _entropy_ranges(model_path: Path, reader, window: int, symmetric: bool) -> Path:
    """Entropy (KL) calibration with 2048 histogram bins, saved as a calibration cache for quantize_static.

    quantize_static builds its entropy calibrator with 128 bins for 128 quantized bins, which
    leaves nothing to clip: its ranges came out identical to minmax (a test compares them).
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    work = model_path.parent
    calibrator = create_calibrator(
        model_path,
        None,
        augmented_model_path=str(work / "entropy-augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": 2048, "num_quantized_bins": 128, "symmetric": symmetric},
    )
    for start in range(0, len(reader), window):
        reader.set_range(start, start + window)
        calibrator.collect_data(reader)
    reader.set_range(0, len(reader))
    cache = work / "entropy-ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


@register_method(
    "static",
    precision="int8",
    needs_calibration=True,
    search=(("int8-static", {"per_channel": True}), ("int8-static-per-tensor", {"per_channel": False})),
    transformers=False,  # QDQ attention loses accuracy and speed where dynamic INT8 does not
)
def static(job: QuantJob) -> dict[str, Any]:
    """QDQ with calibrated activation ranges (minmax, entropy or percentile); the QNN recipe for Hexagon."""
    model_path, output, cfg, batches, excluded = job.model_path, job.output, job.config, job.calib_batches, job.excluded

    from onnxruntime.quantization import QuantFormat, quantize, quantize_static

    from edgeinfer.compress.calibration import BatchReader, window_size

    if not batches:
        raise InputError(
            f"static quantization needs calibration data: pass {option('calib')} (an .npz, a folder of them, "
            "a .txt of sentences, or package.module:function)"
        )
    reader = BatchReader(batches)
    window = window_size(len(reader), cfg.calib_window)
    if cfg.recipe is Recipe.QNN:
        from onnxruntime.quantization.execution_providers.qnn import (
            get_qnn_qdq_config,
            qnn_preprocess_model,
        )

        with scratch_dir("qnn") as tmp:
            pre = Path(tmp) / "pre.onnx"
            source = pre if qnn_preprocess_model(str(model_path), str(pre)) else model_path
            qcfg = get_qnn_qdq_config(
                str(source),
                reader,
                calibrate_method=ort_calibration(cfg.calibration),
                activation_type=ort_qtype(cfg.activation_type),
                weight_type=ort_qtype(cfg.weight_type),
                per_channel=cfg.per_channel,
                nodes_to_exclude=excluded or None,
                stride=window,
            )
            quantize(str(source), str(output), qcfg)
        return {"calibration_batches": len(reader), "calibration_window": window, "recipe": "qnn"}
    cache = None
    if cfg.calibration is CalibMethod.ENTROPY:
        cache = _entropy_ranges(model_path, reader, window, cfg.symmetric)
    quantize_static(
        str(model_path),
        str(output),
        reader,
        quant_format=QuantFormat.QDQ,
        calibration_cache_path=cache,
        per_channel=cfg.per_channel,
        reduce_range=cfg.reduce_range,
        activation_type=ort_qtype(cfg.activation_type),
        weight_type=ort_qtype(cfg.weight_type),
        nodes_to_exclude=excluded,
        calibrate_method=ort_calibration(cfg.calibration),
        extra_options={
            "CalibStridedMinMax": window,
            "ActivationSymmetric": cfg.symmetric,
            "WeightSymmetric": True if cfg.weight_type in (QType.INT8, QType.INT16) else cfg.symmetric,
            **dict(cfg.extra),
        },
    )
    return {"calibration_batches": len(reader), "calibration_window": window}
