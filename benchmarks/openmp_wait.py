"""OpenMP waiting: how long idle threads spin, and what it costs PyTorch, ONNX Runtime and llama.cpp.

    python benchmarks/openmp_wait.py [--out /tmp/edgeinfer-bench] [--runs 3]

libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it loads, and PyTorch and llama.cpp
share one copy in a process. Each setting runs in fresh processes, the settings interleaved round
by round: eager LeNet-5 (batch 8) and its ONNX Runtime session taking turns in one loop, as an
interleaved `compare` does, and SmolLM2-135M Q8_0 on llama.cpp with 2 threads (tg64 / pp64).
The setting the CLI uses (edgeinfer.core.measure.measurement_env) is the one marked "CLI".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).parent))
from _report import parse_args, write_section  # noqa: E402

SETTINGS = {
    "libgomp default (300,000 rounds)": {},
    "PASSIVE (no spin)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "PASSIVE + GOMP_SPINCOUNT=3000 (CLI)": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"},
}

_TORCH_ORT = """
import json, sys, time
import numpy as np, onnxruntime as ort, torch
from edgeinfer.examples.digits import lenet5
torch.manual_seed(0)
model = lenet5().eval()
x = torch.randn(8, 1, 32, 32)
options = ort.SessionOptions()
options.add_session_config_entry("session.intra_op.allow_spinning", "0")
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
eager, onnx = [], []
with torch.inference_mode():
    for i in range(400):
        t = time.perf_counter(); model(x); eager.append(time.perf_counter() - t)
        t = time.perf_counter(); session.run(None, {name: x.numpy()}); onnx.append(time.perf_counter() - t)
print(json.dumps({"eager_ms": float(np.median(eager[100:])) * 1e3, "ort_ms": float(np.median(onnx[100:])) * 1e3}))
"""

_LLAMA = """
import json, sys
from pathlib import Path
from edgeinfer.runtime.llama import LlamaRunner, LlamaSettings
runner = LlamaRunner(Path(sys.argv[1]), LlamaSettings(n_ctx=256, threads=2))
b = runner.bench(n_prompt=64, n_gen=64, reps=2)
print(json.dumps({"tg": b["tg_tokens_per_s"], "pp": b["pp_tokens_per_s"]}))
"""


def _child(code: str, arg: Path, env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", code, str(arg)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import torch

    from edgeinfer.compress.gguf_quant import GgufQuantConfig, quantize_gguf
    from edgeinfer.core.gguf_types import GgufType
    from edgeinfer.examples.digits import lenet5
    from edgeinfer.examples.smollm2 import gguf_path

    args = parse_args(__doc__, runs=3)
    onnx_path = args.out / "lenet-omp.onnx"
    torch.onnx.export(lenet5().eval(), (torch.randn(8, 1, 32, 32),), onnx_path, dynamo=False)
    q8 = args.out / "smollm2-q8_0.gguf"
    if not q8.exists():
        quantize_gguf(gguf_path(), q8, GgufQuantConfig(GgufType.Q8_0))

    results: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for run in range(args.runs):
        for name, env in SETTINGS.items():
            r = _child(_TORCH_ORT, onnx_path, env) | _child(_LLAMA, q8, env)
            results[name].append(r)
            print(run, name, r, flush=True)
    rows = []
    for name, runs in results.items():
        rows.append(
            [name]
            + [f"{median(r[key] for r in runs):.{digits}f}" for key, digits in (("eager_ms", 3), ("ort_ms", 3))]
            + [f"{median(r[key] for r in runs):.1f}" for key in ("tg", "pp")]
        )
    write_section(
        "OpenMP waiting: PyTorch, ONNX Runtime and llama.cpp",
        f"python benchmarks/openmp_wait.py --runs {args.runs}",
        ["setting", "eager LeNet ms", "ORT LeNet ms (interleaved)", "llama.cpp tg64 tok/s (2T)", "pp64 tok/s (2T)"],
        rows,
        f"Medians of {args.runs} fresh processes per setting, interleaved; LeNet-5 batch 8, 300 timed calls each "
        "(eager and ONNX Runtime taking turns), SmolLM2-135M Q8_0 with 2 threads.",
    )


if __name__ == "__main__":
    main()
