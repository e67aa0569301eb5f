"""Where OpenVINO spends the time: its per-layer performance counters, summed by layer and kernel,
for what `optimize --device host` shipped for MiniLM, NNCF's own INT8 recipe (an IR made by its
OpenVINO backend) and OpenVINO's default compile of the export (BF16 on a CPU with BF16).

    python benchmarks/peers.py --models=minilm     # makes the three models in --out
    python benchmarks/ov_counters.py [--runs 20] [--out /tmp/edgeinfer-bench]

It answers why INT8 is not twice BF16 on AMX (only the matmuls get faster; layer norm, adds,
transposes and the attention subgraph stay about the same) and whether edgeinfer's QDQ ONNX
compiles to the same kernels as NNCF's IR. MiniLM at batch 16 x 128, 2 threads, one stream.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _report import cpu_tag, parse_args, write_section  # noqa: E402

BATCH, SEQ, TOP = 16, 128, 8


def counters(path: Path, feeds: dict[str, np.ndarray], runs: int) -> tuple[float, str, dict[tuple[str, str], float]]:
    """Median wall ms, the inference precision OpenVINO chose, and ms per (layer type, kernel)."""
    import openvino as ov

    compiled = ov.Core().compile_model(
        str(path), "CPU", {"INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 1, "PERF_COUNT": True}
    )
    request = compiled.create_infer_request()
    names = {n for port in compiled.inputs for n in port.get_names()}
    feeds = {k: v for k, v in feeds.items() if k in names}
    for _ in range(3):
        request.infer(feeds)
    walls: list[float] = []
    per_kernel: dict[tuple[str, str], float] = collections.defaultdict(float)
    for _ in range(runs):
        start = time.perf_counter()
        request.infer(feeds)
        walls.append(time.perf_counter() - start)
        for layer in request.profiling_info:
            per_kernel[(layer.node_type, layer.exec_type)] += layer.real_time.total_seconds() * 1e3 / runs
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return float(np.median(walls)) * 1e3, precision, dict(per_kernel)


def main() -> None:
    args = parse_args(__doc__)
    models = {
        "edgeinfer optimize --device host (bundle)": args.out / "minilm-host-bundle" / "model.onnx",
        "NNCF INT8 recipe (IR)": args.out / "minilm-nncf-int8.xml",
        "OpenVINO default compile": args.out / "minilm.onnx",
    }
    missing = [str(p) for p in models.values() if not p.exists()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run python benchmarks/peers.py --models=minilm first")
    ids = np.random.default_rng(0).integers(1000, 29000, (BATCH, SEQ))
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    rows = []
    for name, path in models.items():
        wall, precision, per_kernel = counters(path, feeds, args.runs)
        total = sum(per_kernel.values())
        top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:TOP]
        print(f"{name}: {wall:.2f} ms wall, {total:.2f} ms in counters, {precision}")
        for (layer, kernel), ms in top:
            rows.append([name, f"{wall:.2f} ms", layer, kernel, f"{ms:.2f} ms", f"{100 * ms / total:.1f}%"])
            print(f"  {ms:7.2f} ms {100 * ms / total:5.1f}%  {layer} {kernel}")
    write_section(
        f"OpenVINO per-layer time, MiniLM b16 x 128 ({cpu_tag()})",
        f"python benchmarks/ov_counters.py --runs {args.runs}",
        ["model", "wall p50", "layer type", "kernel", "ms per run", "share"],
        rows,
        f"OpenVINO's performance counters (PERF_COUNT), summed per layer type and kernel over {args.runs} runs "
        f"after 3 warm-up runs, the {TOP} largest per model; 2 threads, one stream; measured one model after another "
        "(not interleaved: compare the kernels, and peers.py for the speed ratios).",
    )


if __name__ == "__main__":
    main()
