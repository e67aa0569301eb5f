"""ONNX Runtime FP32 against eager PyTorch: MiniLM-L6 (batch 16, seq 128) and LeNet-5 (batch 1, 64).

Exports both through `edgeinfer export` (validated), then times them with `bench --baseline`,
interleaved, and writes the medians and ratios into BENCHMARKS.md.

    python benchmarks/export_runtime.py [--runs 20] [--out /tmp/edgeinfer-bench]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import minilm_dir, parse_args, write_section  # noqa: E402


def main() -> None:
    args = parse_args(__doc__)

    from edgeinfer.pipelines.bench import bench_model
    from edgeinfer.pipelines.export import export_model

    minilm = minilm_dir()
    cases = [
        ("all-MiniLM-L6-v2", str(minilm), args.out / "minilm.onnx", {"batch": [16], "sequence": [128]}),
        ("LeNet-5 (digits)", "edgeinfer.examples.digits:lenet", args.out / "lenet.onnx", {"batch": [1]}),
        ("LeNet-5 (digits)", "edgeinfer.examples.digits:lenet", args.out / "lenet.onnx", {"batch": [64]}),
    ]
    rows = []
    for name, source, path, shapes in cases:
        if not path.exists():
            export_model(source, path)
        # Our own example factories: trusting the sidecar's source is safe here.
        r = bench_model(path, shapes=shapes, runs=args.runs, warmup=3, baseline="auto", trust_source=True).to_dict()
        b = r["baseline"]
        lo, hi = b["speedup_ci95"]
        rows.append(
            [
                name,
                str(r["inputs"]),
                f"{b['latency_ms']['p50']:.2f}",
                f"{r['latency_ms']['p50']:.2f}",
                f"**{b['speedup']:.2f}x** ({lo:.2f}-{hi:.2f})",
            ]
        )
        print(rows[-1], flush=True)
    write_section(
        "ONNX Runtime FP32 vs eager PyTorch",
        f"python benchmarks/export_runtime.py --runs {args.runs}",
        ["model", "inputs", "PyTorch p50 ms", "ONNX Runtime p50 ms", "speedup (95% CI)"],
        rows,
        "Both runtimes use all cores; runs alternate between them (interleaved).",
    )


if __name__ == "__main__":
    main()
