"""Measure one candidate against its baseline on the device itself: shipped by `optimize --executor
ssh://HOST` with the two models and the evaluation batches, and run there as
`python -I on_device.py WORKDIR`. Standalone: it needs only onnxruntime and numpy, as a bundle's
run.py does, and imports nothing from edgeinfer (the device need not have it).

WORKDIR holds baseline.onnx, candidate.onnx, batches.npz ("B:NAME": batch B's input NAME) and
job.json ({"providers": [...], "threads": N or null, "runs": N, "outputs": [K, ...]}). It writes
outputs.npz ("base:B:K", "cand:B:K": each model's output K on batch B, float32; only the outputs
job.json lists, the ones scored) and result.json: what ran (providers,
machine, versions), every timed run of each model (interleaved, alternating order), and the peak
resident memory of a fresh process that loads the candidate and runs batch 0 once.
"""

import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort


def session(path, providers, threads):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    # Threads sleep between runs instead of spinning: runs alternate between two sessions.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, sess_options=options, providers=providers)


def batches(path):
    with np.load(path, allow_pickle=False) as data:
        out = {}
        for key in data.files:
            index, name = key.split(":", 1)
            out.setdefault(int(index), {})[name] = data[key]
    return [out[i] for i in sorted(out)]


def peak_memory_mb(model, feeds_path, providers, threads):
    """Peak resident MiB of a fresh process that loads `model` and runs batch 0 once."""
    code = (
        "import json, resource, sys, numpy as np, onnxruntime as ort\n"
        "o = ort.SessionOptions(); o.log_severity_level = 3\n"
        "t = json.loads(sys.argv[4])\n"
        "if t: o.intra_op_num_threads = t\n"
        "s = ort.InferenceSession(sys.argv[1], sess_options=o, providers=json.loads(sys.argv[3]))\n"
        "with np.load(sys.argv[2], allow_pickle=False) as d:\n"
        "    feeds = {k.split(':', 1)[1]: d[k] for k in d.files if k.startswith('0:')}\n"
        "names = {i.name for i in s.get_inputs()}\n"
        "s.run(None, {k: v for k, v in feeds.items() if k in names})\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    args = [model, feeds_path, json.dumps(providers), json.dumps(threads)]
    done = subprocess.run([sys.executable, "-I", "-c", code, *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return None
    return float(done.stdout.strip().splitlines()[-1])


def main(work):
    job = json.load(open(os.path.join(work, "job.json")))
    providers, threads, runs = job["providers"], job["threads"], int(job["runs"])
    wanted = job["outputs"]  # the output indices scored (a detector's boxes, not its hidden states)
    base = session(os.path.join(work, "baseline.onnx"), ["CPUExecutionProvider"], threads)
    cand = session(os.path.join(work, "candidate.onnx"), providers, threads)
    data = batches(os.path.join(work, "batches.npz"))
    outputs = {}
    for label, model in (("base", base), ("cand", cand)):
        names = {i.name for i in model.get_inputs()}
        for index, batch in enumerate(data):
            result = model.run(None, {k: v for k, v in batch.items() if k in names})
            for k, value in enumerate(result):
                if k in wanted:
                    outputs[f"{label}:{index}:{k}"] = np.asarray(value, dtype=np.float32)
    np.savez(os.path.join(work, "outputs.npz"), **outputs)
    feeds = {label: {k: v for k, v in data[0].items() if k in {i.name for i in m.get_inputs()}}
             for label, m in (("base", base), ("cand", cand))}  # fmt: skip
    for _ in range(3):  # warm-up
        base.run(None, feeds["base"])
        cand.run(None, feeds["cand"])
    times = {"base": [], "cand": []}
    for i in range(runs):
        order = (("base", base), ("cand", cand)) if i % 2 == 0 else (("cand", cand), ("base", base))
        for label, model in order:
            start = time.perf_counter()
            model.run(None, feeds[label])
            times[label].append(time.perf_counter() - start)
    result = {
        "schema": 1,
        "providers": cand.get_providers(),
        "machine": platform.machine(),
        "system": platform.system(),
        "cpus": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
        "times_s": times,
        "memory_mb": peak_memory_mb(
            os.path.join(work, "candidate.onnx"), os.path.join(work, "batches.npz"), providers, threads
        ),
    }
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
