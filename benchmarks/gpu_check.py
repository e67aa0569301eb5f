"""The GPU path of llama.cpp, checked on an NVIDIA machine that has no network: prepare what it
needs here, run `gpu_check.sh` there, record its figures here.

    python benchmarks/gpu_check.py prepare [--dest .gpu]       # here: < 30 MB to carry
    bash .gpu/gpu_check.sh                                      # there (DRY=1: its CPU steps, anywhere)
    python benchmarks/gpu_check.py record gpu-check-out/gpu.json  # here: the rows into BENCHMARKS.md

`measure` (run by gpu_check.sh) first loads the GGUF in one fresh process per load setting (the
library's defaults; extra buffers off; edgeinfer's log capture; LlamaRunner as edgeinfer loads it,
with and without extra buffers), so a crash names the setting that causes it (exit 139 of that
child, the others' exit 0). Then on the GPU: tg and pp tokens/s of edgeinfer's bench against
llama-cpp-python called directly on the same file, the share of the GPU's memory bandwidth tg
reaches (weights read per token x tok/s over the GPU's peak), and the KL divergence of the GPU's
next-token distributions from the CPU's on the same tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Peak memory bandwidth, GB/s, by the name nvidia-smi reports (the vendors' data sheets).
PEAK_GBS = {"H200": 4800.0, "H100 80GB HBM3": 3350.0, "H100 PCIe": 2000.0, "A100-SXM4-80GB": 2039.0, "L4": 300.0}
# What the GPU image lacks (it has torch, transformers, numpy, onnxruntime): the note in
# ../shared/notes/gpu-check.md lists them; pydantic is llama-cpp-python's server's.
WHEELS = [
    "gguf", "typer", "rich", "shellingham", "annotated-doc", "torch-pruning", "tomli-w", "diskcache",
    "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions", "psutil",
    "fastapi", "starlette", "uvicorn", "sse-starlette", "starlette-context", "anyio", "h11", "click",
]  # fmt: skip
LOADS = {
    "library defaults": "import llama_cpp as L; L.Llama(M, n_gpu_layers=G, n_ctx=256, verbose=False)",
    "extra buffers off": (
        "import llama_cpp as L; from edgeinfer.runtime.llama import model_params\n"
        "with model_params(False): L.Llama(M, n_gpu_layers=G, n_ctx=256, verbose=False)"
    ),
    "edgeinfer's log capture": (
        "import llama_cpp as L; from edgeinfer.runtime.llama import _llama_log\n"
        "with _llama_log(): L.Llama(M, n_gpu_layers=G, n_ctx=256, verbose=False)"
    ),
    "LlamaRunner (edgeinfer's load)": (
        "from edgeinfer.runtime.llama import LlamaRunner, LlamaSettings\n"
        "r = LlamaRunner(Path(M), LlamaSettings(n_ctx=256, n_gpu_layers=G)); print(r.report.used)"
    ),
    "LlamaRunner, extra buffers off": (
        "from edgeinfer.runtime.llama import LlamaRunner, LlamaSettings\n"
        "LlamaRunner(Path(M), LlamaSettings(n_ctx=256, n_gpu_layers=G, extra_buffers=False))"
    ),
}


def prepare(dest: Path) -> None:
    """The folder to carry to the GPU machine: a trimmed llama-cpp-python sdist, the wheels its
    image lacks (CPython 3.12), the project as `git archive`, SmolLM2's tokenizer, the script."""
    import llama_cpp

    dest.mkdir(parents=True, exist_ok=True)
    version = llama_cpp.__version__
    with tempfile.TemporaryDirectory() as tmp:
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", tmp,
             f"llama-cpp-python=={version}"])  # fmt: skip
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = Path(tmp) / f"llama_cpp_python-{version}"
        vendor = src / "vendor" / "llama.cpp"
        for junk in [*vendor.glob("models/ggml-vocab-*"), vendor / "docs", vendor / "benches", src / ".git"]:
            shutil.rmtree(junk, ignore_errors=True) if junk.is_dir() else junk.unlink(missing_ok=True)
        with tarfile.open(dest / "llama-src.tgz", "w:gz") as tar:
            tar.add(src, arcname=src.name)
    wheels = dest / "whl"
    shutil.rmtree(wheels, ignore_errors=True)
    from importlib import metadata

    def pinned(name: str) -> str:  # the versions that work together here (pydantic and its core)
        try:
            return f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            return name

    run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", "-d", str(wheels),
         "--python-version", "3.12", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
         "--implementation", "cp", *map(pinned, WHEELS)])  # fmt: skip
    with open(dest / "edgeinfer-src.tgz", "wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar.gz", "HEAD"], stdout=f, check=True)
    from edgeinfer.examples.smollm2 import hf_dir

    tok = dest / "tok"
    tok.mkdir(exist_ok=True)
    for f in hf_dir().iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            shutil.copy(f, tok / f.name)
    shutil.copy(HERE / "gpu_check.sh", dest / "gpu_check.sh")
    shutil.copy(HERE / "gpu_check.py", dest / "gpu_check.py")
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {size / 2**20:.1f} MiB to carry")


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True)


def bisect(model: Path, gpu_layers: int) -> dict[str, int]:
    """Each load setting in a fresh process: its exit code (139: the segfault)."""
    out = {}
    for name, code in LOADS.items():
        prog = f"from pathlib import Path\nM, G = {str(model)!r}, {gpu_layers}\n{code}\n"
        done = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=600)
        out[name] = done.returncode if done.returncode >= 0 else 128 - done.returncode
        print(f"load: {name}: exit {out[name]}", flush=True)
    return out


def direct_speed(model: Path, gpu_layers: int, n_gen: int = 128, n_prompt: int = 512) -> dict[str, float]:
    """tg and pp tokens/s of llama-cpp-python called directly (library defaults), median of 3."""
    import llama_cpp

    llm = llama_cpp.Llama(str(model), n_gpu_layers=gpu_layers, n_ctx=n_prompt + n_gen + 8, verbose=False)
    tg, pp = [], []
    for _ in range(3):
        llm.reset()
        start = time.perf_counter()
        llm.eval([1] * n_prompt)
        pp.append(n_prompt / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(n_gen):
            llm.eval([2])
        tg.append(n_gen / (time.perf_counter() - start))
    llm.close()
    return {"tg": sorted(tg)[1], "pp": sorted(pp)[1]}


def gpu_cpu_kl(model: Path, n_tokens: int = 256) -> dict[str, float]:
    """KL of the GPU's next-token distributions from the CPU's, on the same tokens (edgeinfer's runner)."""
    import numpy as np

    from edgeinfer.examples import PUBLIC_DOMAIN_TEXT
    from edgeinfer.runtime.llama import LlamaRunner, LlamaSettings

    log_probs = {}
    for where, layers in (("gpu", 999), ("cpu", 0)):
        runner = LlamaRunner(model, LlamaSettings(n_ctx=n_tokens + 8, n_gpu_layers=layers), logits_all=True)
        tokens = runner.tokenize(PUBLIC_DOMAIN_TEXT.read_text())[:n_tokens]
        log_probs[where] = runner.sequence_log_probs(tokens)
        runner.close()
    p, q = log_probs["cpu"], log_probs["gpu"]
    kl = (np.exp(p) * (p - q)).sum(1)
    return {"kl_mean": float(kl.mean()), "top1": float((p.argmax(1) == q.argmax(1)).mean())}


def measure(out: Path, model: Path) -> None:
    import llama_cpp

    out.mkdir(parents=True, exist_ok=True)
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    gpu = subprocess.run(query, capture_output=True, text=True).stdout.strip() if shutil.which(query[0]) else ""
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    layers = 999 if offload else 0
    result: dict = {"gpu": gpu or "none", "offload": offload, "model": model.name, "cores": os.cpu_count()}
    result["loads"] = bisect(model, layers)
    if all(code == 0 for code in result["loads"].values()):
        bench = subprocess.run(
            [sys.executable, "-m", "edgeinfer", "bench", str(model), "--json",
             *(["--device", "jetson-orin"] if offload else [])],  # jetson-orin: all layers on the GPU
            capture_output=True, text=True,
        )  # fmt: skip
        result["edgeinfer_bench"] = json.loads(bench.stdout) if bench.returncode == 0 else {"exit": bench.returncode}
        result["direct"] = direct_speed(model, layers)
        result["direct_cpu"] = direct_speed(model, 0) if offload else result["direct"]
        if offload:
            result["gpu_vs_cpu"] = gpu_cpu_kl(model)
        weights = model.stat().st_size
        peak = next((v for k, v in PEAK_GBS.items() if k in gpu), None)
        if peak and offload:
            result["bandwidth_share"] = weights * result["direct"]["tg"] / (peak * 1e9)
    (out / "gpu.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def record(path: Path) -> None:
    sys.path.insert(0, str(HERE))
    from _report import write_section

    r = json.loads(path.read_text())
    if not r.get("offload") or r.get("gpu") in (None, "", "none"):
        sys.exit(f"{path}: measured without a GPU (a DRY run, or a build without offload): not recorded")
    rows = [[f"load: {k}", "exit " + str(v), "", ""] for k, v in r["loads"].items()]
    bench = r.get("edgeinfer_bench", {})
    if "direct" in r:
        tg = bench.get("tg_tokens_per_s") or bench.get("generate_tps")
        rows.append(["tg tok/s (GPU)", f"{r['direct']['tg']:.1f}", f"{tg:.1f}" if tg else "-", ""])
        rows.append(["pp tok/s (GPU)", f"{r['direct']['pp']:.1f}", "", ""])
        rows.append(["tg tok/s (CPU)", f"{r['direct_cpu']['tg']:.1f}", "", ""])
    if "bandwidth_share" in r:
        rows.append(["share of peak memory bandwidth (tg)", f"{100 * r['bandwidth_share']:.0f}%", "", ""])
    if "gpu_vs_cpu" in r:
        g = r["gpu_vs_cpu"]
        rows.append(["GPU vs CPU logits", "", "", f"KL {g['kl_mean']:.5f}, top-1 {g['top1']:.3f}"])
    write_section(
        "llama.cpp on an NVIDIA GPU", "bash .gpu/gpu_check.sh (prepared by benchmarks/gpu_check.py prepare)",
        ["what", "llama-cpp-python directly", "edgeinfer", "agreement"], rows,
        notes=f"GPU: {r['gpu']}; {r['cores']} CPU cores; {r['model']}; GPU offload in this build: {r['offload']}.",
        machine_line=f"{r['gpu']} host, {r['cores']} cores",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("prepare").add_argument("--dest", type=Path, default=ROOT / ".gpu")
    m = sub.add_parser("measure")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--model", type=Path, required=True)
    sub.add_parser("record").add_argument("path", type=Path)
    args = parser.parse_args()
    if args.what == "prepare":
        prepare(args.dest)
    elif args.what == "measure":
        measure(args.out, args.model)
    else:
        record(args.path)


if __name__ == "__main__":
    main()
