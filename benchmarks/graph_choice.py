"""The measurements behind docs/transformer-speed.md's graph and layout choices, re-run.

    python benchmarks/graph_choice.py [--runs 30] [--out /tmp/edgeinfer-bench]

1. MiniLM-L6 exported by torch.export and by TorchScript, FP32 and dynamic INT8 (per channel) of
   each, all four timed in one interleaved loop at batch 1 x 32 and batch 16 x 128: why
   `--exporter auto` tries TorchScript first for BERT encoders.
2. The digits LeNet-5, FP32 against static INT8 in three layouts (QDQ per channel and per tensor,
   u8s8; per channel s8s8), at batch 1 and 64: why INT8 loses to FP32 on this CPU for small CNNs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _report import minilm_dir, parse_args, write_section  # noqa: E402


def _time(paths: dict[str, Path], feeds: dict[str, np.ndarray], runs: int) -> list[list[str]]:
    """Every model in one interleaved loop; the first is the reference of the ratios."""
    from edgeinfer.core.measure import interleaved, speedup_ci
    from edgeinfer.runtime.ort import OrtRunner

    runners = {k: OrtRunner(p, profile_first_run=False) for k, p in paths.items()}

    def call(runner):
        names = {i.name for i in runner.inputs}
        f = {k: v for k, v in feeds.items() if k in names}
        return lambda: runner.session.run(None, f)

    times = interleaved({k: call(r) for k, r in runners.items()}, runs=runs, warmup=5)
    first = next(iter(times))
    rows = []
    for name, t in times.items():
        point, lo, hi = speedup_ci(times[first], t)
        ratio = "1.00x (reference)" if name == first else f"{point:.2f}x ({lo:.2f}-{hi:.2f})"
        rows.append([name, f"{np.median(t) * 1000:.2f}", ratio])
    return rows


def transformer_graphs(args) -> None:
    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.quantize import quantize

    paths = {}
    for exporter in ("dynamo", "torchscript"):
        fp32 = args.out / f"minilm-{exporter}.onnx"
        int8 = args.out / f"minilm-{exporter}-int8.onnx"
        export_model(str(minilm_dir()), fp32, exporter=exporter, force=True)
        quantize(fp32, int8, OnnxQuantConfig("dynamic"), compare=False, force=True)
        paths[f"{exporter} FP32"], paths[f"{exporter} INT8"] = fp32, int8
    rows = []
    rng = np.random.default_rng(0)
    for batch, seq in ((1, 32), (16, 128)):
        ids = rng.integers(1000, 2000, (batch, seq)).astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        for row in _time(paths, feeds, args.runs):
            rows.append([f"b{batch} x {seq}", *row])
            print(rows[-1], flush=True)
    write_section(
        "Graph choice: MiniLM-L6 from torch.export against TorchScript",
        f"python benchmarks/graph_choice.py --runs {args.runs}",
        ["shape", "graph", "p50 ms", "speedup vs torch.export FP32 (95% CI)"],
        rows,
        "The same weights exported two ways (`--exporter dynamo` / `--exporter torchscript`), no offline "
        "optimization; dynamic INT8 per channel of each; all four in one interleaved loop.",
    )


def cnn_layouts(args) -> None:
    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.examples.digits import load_split, save_calib_npz
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.quantize import quantize

    fp32 = args.out / "lenet-fp32.onnx"
    export_model("edgeinfer.examples.digits:lenet", fp32, force=True)
    calib = str(save_calib_npz(args.out / "digits-calib.npz"))
    layouts = {
        "QDQ per channel, u8s8": OnnxQuantConfig("static", per_channel=True),
        "QDQ per tensor, u8s8": OnnxQuantConfig("static", per_channel=False),
        "QDQ per channel, s8s8": OnnxQuantConfig("static", per_channel=True, activation_type="int8"),  # type: ignore[arg-type]
    }
    paths = {"FP32": fp32}
    for name, cfg in layouts.items():
        out = args.out / f"lenet-{name.replace(' ', '-').replace(',', '')}.onnx"
        quantize(fp32, out, cfg, calib=calib, compare=False, force=True)
        paths[name] = out
    _, x_test, _, _ = load_split()
    rows = []
    for batch in (1, 64):
        feeds = {"input": x_test[:batch].astype(np.float32)}
        for row in _time(paths, feeds, args.runs):
            rows.append([f"batch {batch}", *row])
            print(rows[-1], flush=True)
    write_section(
        "Layout choice: LeNet-5 FP32 against static INT8 layouts",
        f"python benchmarks/graph_choice.py --runs {args.runs}",
        ["shape", "model", "p50 ms", "speedup vs FP32 (95% CI)"],
        rows,
        "Static INT8 calibrated (minmax) on 128 training digits; every layout in one interleaved loop.",
    )


def main() -> None:
    args = parse_args(__doc__, runs=30)
    transformer_graphs(args)
    cnn_layouts(args)


if __name__ == "__main__":
    main()
