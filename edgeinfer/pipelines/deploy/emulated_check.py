"""A bundle's golden check, run by an emulated aarch64 CPython (deploy/emulate.py): standalone,
it needs only onnxruntime and numpy (from the folder its argument names) and prints one JSON line.

    python -I emulated_check.py '{"site": ..., "model": ..., "golden": ..., "outputs": [...],
                                   "min_cosine": ..., "max_abs_diff": ..., "threads": ..., "runs": ...}'
"""

import json
import platform
import sys
import time


def main(args):
    sys.path.insert(0, args["site"])
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if args.get("threads"):
        options.intra_op_num_threads = args["threads"]
    session = ort.InferenceSession(args["model"], sess_options=options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    with np.load(args["golden"], allow_pickle=False) as golden:
        feeds = {n: golden[n] for n in names}
        expected = {n: golden[f"expected:{n}"] for n in args["outputs"]}
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    worst_cos, worst_diff, problems = 1.0, 0.0, []
    for name, ref in expected.items():
        out = np.asarray(got[name], dtype=np.float64).ravel()
        ref = np.asarray(ref, dtype=np.float64).ravel()
        diff = float(np.abs(out - ref).max()) if ref.size else 0.0
        denom = float(np.linalg.norm(out) * np.linalg.norm(ref))
        cos = float(out @ ref / denom) if denom > 0 else float(np.array_equal(out, ref))
        worst_cos, worst_diff = min(worst_cos, cos), max(worst_diff, diff)
        if cos < args["min_cosine"] or diff > args["max_abs_diff"]:
            problems.append(f"{name}: cosine {cos:.6f}, max abs diff {diff:.3g}")
    times = []
    for _ in range(int(args["runs"])):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    print(
        json.dumps(
            {
                "machine": platform.machine(),
                "onnxruntime": ort.__version__,
                "providers": session.get_providers(),
                "passed": not problems,
                "detail": "; ".join(problems) or f"min cosine {worst_cos:.6f}, max abs diff {worst_diff:.3g}",
                "latency_ms": {"p50": times[len(times) // 2], "min": times[0]},
            }
        )
    )


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
