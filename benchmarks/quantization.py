"""Quantization figures: MiniLM dynamic INT8 and LeNet static INT8 against FP32, and calibration memory.

    python benchmarks/quantization.py [--runs 20] [--out /tmp/edgeinfer-bench]

Speed is measured interleaved by `compare`; calibration memory is the peak RSS growth of a fresh
process quantizing LeNet with entropy calibration, windowed (edgeinfer) or all at once (ORT as is).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import minilm_dir, parse_args, write_section  # noqa: E402

CHILD = r"""
import sys, threading, time, numpy as np, psutil
mode, n, model, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
from edgeinfer.examples.digits import load_split
import onnxruntime.quantization as q
from edgeinfer.compress.calibration import BatchReader
x = load_split()[0]
x = np.concatenate([x] * (n // len(x) + 1))[:n]
batches = [{"input": x[i:i + 1]} for i in range(n)]
# Sampled RSS, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork+exec.
proc = psutil.Process()
base = proc.memory_info().rss
peak = [base]
def watch():
    while True:
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)
threading.Thread(target=watch, daemon=True).start()
extra = {"CalibStridedMinMax": 16} if mode == "windowed" else {}
q.quantize_static(model, out, BatchReader(batches), calibrate_method=q.CalibrationMethod.Entropy, extra_options=extra)
time.sleep(0.01)
print((peak[0] - base) / 2**20)
"""


def calibration_memory(lenet: Path, out: Path) -> list[list[str]]:
    rows = []
    for n in (64, 256, 1024):
        figs = {}
        for mode in ("windowed", "all-at-once"):
            res = subprocess.run(
                [sys.executable, "-c", CHILD, mode, str(n), str(lenet), str(out / "calib-q.onnx")],
                capture_output=True,
                text=True,
                check=True,
            )
            figs[mode] = float(res.stdout.strip().splitlines()[-1])
        rows.append([str(n), f"+{figs['windowed']:.0f} MiB", f"+{figs['all-at-once']:.0f} MiB"])
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    args = parse_args(__doc__)
    if "--memory-only" in sys.argv:
        return memory_section(args)
    if "--npu-only" in sys.argv:
        return npu_section(args)

    from edgeinfer.examples import SENTENCES
    from edgeinfer.examples.digits import save_calib_npz, save_eval_npz
    from edgeinfer.pipelines.compare import compare_models
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.quantize import quantize_model

    minilm_src = minilm_dir()
    minilm, lenet = args.out / "minilm.onnx", args.out / "lenet.onnx"
    if not minilm.exists():
        export_model(str(minilm_src), minilm)
    if not lenet.exists():
        export_model("edgeinfer.examples.digits:lenet", lenet)
    calib, test = save_calib_npz(args.out / "calib.npz"), save_eval_npz(args.out / "test.npz")
    minilm_q = args.out / "minilm-int8.onnx"
    quantize_model(minilm, minilm_q, method="dynamic", force=True, runs=3)
    lenet_q = args.out / "lenet-int8.onnx"
    quantize_model(lenet, lenet_q, method="static", calib=str(calib), force=True, runs=3)

    rows = []
    # Quality on all 250 shipped sentences; speed on batch 16 x 128 tokens.
    quality = compare_models(minilm, [minilm_q], str(SENTENCES), runs=3, batch_size=25).to_dict()
    long_batch = args.out / "minilm-b16s128.npz"
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(
        long_batch,
        input_ids=rng.integers(1000, 29000, (16, 128)),
        attention_mask=np.ones((16, 128), np.int64),
        token_type_ids=np.zeros((16, 128), np.int64),
    )
    speed = compare_models(
        minilm,
        [minilm_q],
        str(long_batch),
        runs=args.runs,
        batch_size=16,
        task=__import__("edgeinfer.pipelines.compare", fromlist=["EvalTask"]).EvalTask.RAW,
    )
    q_row, s_row = quality["rows"][1], speed.rows[1].to_dict()
    lo, hi = s_row["speedup_ci95"]
    rows.append(
        [
            "MiniLM-L6 dynamic INT8",
            f"{q_row['file_size_bytes'] / 2**20:.1f} / {quality['rows'][0]['file_size_bytes'] / 2**20:.1f} MiB",
            f"cosine {q_row['metrics']['cosine_mean']:.4f} (min {q_row['metrics']['cosine_min']:.4f}), "
            f"top-10 retrieval {q_row['metrics']['retrieval_top10']:.3f} on {quality['samples']} sentences",
            f"**{s_row['speedup']:.2f}x** ({lo:.2f}-{hi:.2f}) at b16 s128",
        ]
    )
    for batch in (1, 64):
        rep = compare_models(lenet, [lenet_q], str(test), runs=args.runs, batch_size=batch).to_dict()
        base, cand = rep["rows"]
        lo, hi = cand["speedup_ci95"]
        rows.append(
            [
                f"LeNet-5 static INT8 (batch {batch})",
                f"{cand['file_size_bytes'] / 1024:.0f} / {base['file_size_bytes'] / 1024:.0f} KiB",
                f"top-1 {cand['metrics']['accuracy']:.4f} vs {base['metrics']['accuracy']:.4f} "
                f"({cand['delta'] * 100:+.2f} points) on {rep['samples']} test images",
                f"**{cand['speedup']:.2f}x** ({lo:.2f}-{hi:.2f})",
            ]
        )
    for r in rows:
        print(r, flush=True)
    write_section(
        "ONNX quantization vs FP32",
        f"python benchmarks/quantization.py --runs {args.runs}",
        ["model", "size (quantized / fp32)", "quality", "speedup vs FP32 (95% CI)"],
        rows,
        "Speedup below 1.00x means the quantized model is slower on this CPU; edgeinfer says so too.",
    )
    memory_section(args)
    npu_section(args)
    print(json.dumps({"done": True}))


def npu_section(args) -> None:
    """LeNet-5 static INT8 (QNN recipe) on the Hexagon HTP simulator against FP32 on the CPU."""
    from edgeinfer.devices import get_profile
    from edgeinfer.examples.digits import save_calib_npz, save_eval_npz
    from edgeinfer.pipelines.compare import compare_models
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.quantize import quantize_model

    npu = get_profile("snapdragon-npu")
    fp32 = args.out / "lenet-b8.onnx"
    export_model("edgeinfer.examples.digits:lenet", fp32, static_shapes=True, force=True)
    calib, test = save_calib_npz(args.out / "calib.npz"), save_eval_npz(args.out / "test.npz")
    cand = args.out / "lenet-npu.onnx"
    quantize_model(fp32, cand, method="static", calib=str(calib), profile=npu, force=True, runs=3)
    rep = compare_models(fp32, [cand], str(test), device=npu, runs=5).to_dict()
    base, q = rep["rows"]
    from edgeinfer.runtime import ProviderReport

    placement = ProviderReport(q["providers"], q["providers"], [], q["placement"]).summary()
    rows = [
        ["LeNet-5 FP32, CPU", f"{base['metrics']['accuracy']:.4f}", "-", "CPU"],
        [
            "LeNet-5 QDQ uint8 (QNN recipe), HTP simulator",
            f"{q['metrics']['accuracy']:.4f}",
            f"{q['delta'] * 100:+.2f} points",
            placement + ", CPU fallback disabled",
        ],
    ]
    print(rows, flush=True)
    write_section(
        "NPU: Qualcomm HTP simulator",
        "python benchmarks/quantization.py --npu-only",
        ["model", f"top-1 on {rep['samples']} test images", "delta", "where it ran"],
        rows,
        "Accuracy is real; latency on the x86 simulator says nothing about a device and is not reported.",
    )


def memory_section(args) -> None:
    lenet = args.out / "lenet.onnx"
    if not lenet.exists():
        from edgeinfer.pipelines.export import export_model

        export_model("edgeinfer.examples.digits:lenet", lenet)
    write_section(
        "Calibration memory",
        "python benchmarks/quantization.py",
        ["samples (batch 1, entropy)", "edgeinfer (windows of 16)", "onnxruntime quantize_static as is"],
        calibration_memory(lenet, args.out),
        "Peak RSS growth (sampled every 2 ms) of a fresh process during quantize_static on LeNet-5.",
    )


if __name__ == "__main__":
    main()
