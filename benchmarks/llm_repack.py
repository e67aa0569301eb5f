"""llama.cpp's repacked weights, and what bounds generation: SmolLM2-135M per quantization type.

    python benchmarks/llm_repack.py [--out /tmp/edgeinfer-bench] [--runs 3]

At load, llama.cpp can copy the weights into "extra" CPU buffers laid out for its fastest kernels
(CPU_REPACK: interleaved blocks for AVX2 / AVX-512; AMX: tiles on CPUs with AMX). edgeinfer turns
this off on AMX CPUs, where the bundled llama.cpp crashes in decode (runtime.llama.use_extra_buffers).
For each type this measures, in a fresh process per run (a crash is recorded, not fatal), with the
runs interleaved: generation (tg64) and prompt (pp64) speed with repacking on and off at 2 threads
and at 1 thread, which weights went to which buffer, and how far the repacked kernels' log-probs
are from the plain ones' (KL on 256 tokens of the shipped text; against F16, both).

On an AMX host the same script is the minimal reproduction of the crash: the "on" rows say which
types crash, with which signal. The thread and repack columns give the measured reason a type stays
under the memory-bandwidth bound: a speed that grows with cores, or with a faster kernel on the same
bytes, is limited by compute, not by memory.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).parent))
from _report import parse_args, write_section  # noqa: E402

TYPES = ("Q4_0", "Q4_1", "Q8_0", "Q4_K_M")
# (repack, threads), interleaved within each run.
CONFIGS = ((True, 2), (False, 2), (True, 1), (False, 1))

_CHILD = """
import json, sys
from pathlib import Path
from edgeinfer.runtime.llama import LlamaRunner, LlamaSettings
path, repack, threads = Path(sys.argv[1]), sys.argv[2] == "on", int(sys.argv[3])
runner = LlamaRunner(path, LlamaSettings(n_ctx=256, threads=threads, extra_buffers=repack))
bench = runner.bench(n_prompt=64, n_gen=64, reps=1)
print(json.dumps({"tg": bench["tg_tokens_per_s"], "pp": bench["pp_tokens_per_s"], "buffers": runner.weight_buffers}))
"""

# Log-probs of F16, plain and repacked weights on the same tokens; repacked last (it may crash).
_QUALITY_CHILD = """
import json, sys
from pathlib import Path
import numpy as np
from edgeinfer.examples import PUBLIC_DOMAIN_TEXT
from edgeinfer.runtime.llama import LlamaRunner, LlamaSettings
def log_probs(path, repack):
    runner = LlamaRunner(Path(path), LlamaSettings(n_ctx=256, extra_buffers=repack), logits_all=True)
    tokens = runner.tokenize(Path(PUBLIC_DOMAIN_TEXT).read_text())[:256]
    out = runner.sequence_log_probs(tokens)
    runner.close()
    return out
def kl(p, q):
    return float((np.exp(p) * (p - q)).sum(1).mean()), float((p.argmax(1) == q.argmax(1)).mean())
f16, plain = log_probs(sys.argv[1], False), log_probs(sys.argv[2], False)
packed = log_probs(sys.argv[2], True)
print(json.dumps({"plain_vs_repack": kl(plain, packed), "f16_plain": kl(f16, plain), "f16_repack": kl(f16, packed)}))
"""


def _child(path: Path, repack: bool, threads: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), "on" if repack else "off", str(threads)],
        capture_output=True,
        text=True,
    )
    if proc.returncode < 0:
        return {"crash": signal.Signals(-proc.returncode).name}
    if proc.returncode:
        return {"crash": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:120]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _quality(f16: Path, path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", _QUALITY_CHILD, str(f16), str(path)], capture_output=True, text=True)
    if proc.returncode < 0:
        return {"crash": signal.Signals(-proc.returncode).name}
    proc.check_returncode()
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    from edgeinfer.compress.gguf_quant import GgufQuantConfig
    from edgeinfer.core.gguf_types import GgufType
    from edgeinfer.core.measure import read_bandwidth_gb_s
    from edgeinfer.examples.smollm2 import hf_dir
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.llm import kquantize
    from edgeinfer.runtime.llama import bytes_per_token, cpu_has_amx

    args = parse_args(__doc__, runs=3)
    f16 = args.out / "smollm2-f16.gguf"
    if not f16.exists():
        export_model(str(hf_dir()), f16)
    files = {}
    for name in TYPES:
        files[name] = args.out / f"smollm2-{name.lower()}.gguf"
        if not files[name].exists():
            kquantize(f16, files[name], GgufQuantConfig(GgufType(name)), force=True)

    bandwidth = {t: read_bandwidth_gb_s(threads=t) for t in (1, 2)}
    print("read bandwidth GB/s", bandwidth, flush=True)
    results: dict[tuple[str, bool, int], list[dict]] = {}
    for run in range(args.runs):
        for name, path in files.items():
            for repack, threads in CONFIGS:
                r = _child(path, repack, threads)
                results.setdefault((name, repack, threads), []).append(r)
                print(
                    run, name, "repack" if repack else "plain", threads, r.get("crash") or f"{r['tg']:.1f}", flush=True
                )

    rows = []
    for name, path in files.items():
        mib_per_token = bytes_per_token(path) / 2**20

        def tg(repack: bool, threads: int, key: str = "tg") -> float | None:
            runs = results[(name, repack, threads)]
            ok = [r[key] for r in runs if "crash" not in r]
            return median(ok) if len(ok) == len(runs) else None

        crashes = sorted(
            {r["crash"] for (n, rp, _), rs in results.items() if n == name and rp for r in rs if "crash" in r}
        )
        on2, off2, on1, off1 = tg(True, 2), tg(False, 2), tg(True, 1), tg(False, 1)
        pp_on, pp_off = tg(True, 2, "pp"), tg(False, 2, "pp")
        first_ok = next((r for r in results[(name, True, 2)] if "crash" not in r), {})
        repacked = first_ok.get("buffers", {}).get("CPU_REPACK", 0.0) + first_ok.get("buffers", {}).get("AMX", 0.0)
        q = _quality(f16, path)
        print(name, q, flush=True)
        if "crash" in q:
            quality = f"repacked: {q['crash']}"
        else:
            quality = (
                f"{q['plain_vs_repack'][0]:.4f} ({q['plain_vs_repack'][1]:.3f}); "
                f"F16: {q['f16_plain'][0]:.3f} / {q['f16_repack'][0]:.3f}"
            )
        best2 = max(x for x in (on2, off2) if x is not None) if (on2 or off2) else None
        best1 = max(x for x in (on1, off1) if x is not None) if (on1 or off1) else None

        def f(x: float | None) -> str:
            return f"{x:.1f}" if x is not None else "crashed"

        def share(speed: float | None, threads: int) -> str:
            if speed is None:
                return "-"
            return f"{speed * mib_per_token * 2**20 / (bandwidth[threads] * 1e9):.0%}"

        rows.append(
            [
                name,
                f"{repacked:.1f}" if first_ok else ", ".join(crashes),
                f(on2),
                f(off2),
                f"{on2 / off2:.2f}x" if on2 and off2 else "-",
                f"{pp_on / pp_off:.2f}x" if pp_on and pp_off else "-",
                f(on1),
                f(off1),
                f"{best2 / best1:.2f}x" if best2 and best1 else "-",
                share(best2, 2),
                share(best1, 1),
                quality,
            ]
        )
        print(rows[-1], flush=True)
    amx = "an AMX CPU: repacking is off by default here" if cpu_has_amx() else "no AMX: repacking is on by default here"
    write_section(
        "llama.cpp repacked weights and what bounds generation: SmolLM2-135M",
        f"python benchmarks/llm_repack.py --runs {args.runs}",
        [
            "type",
            "repacked MiB",
            "tg64 2T repack",
            "tg64 2T plain",
            "repack gain tg",
            "repack gain pp64",
            "tg64 1T repack",
            "tg64 1T plain",
            "2T / 1T",
            "share of 2T bound",
            "share of 1T bound",
            "KL plain vs repacked (top-1); KL from F16 plain / repacked",
        ],
        rows,
        f"Tokens per second, medians of {args.runs} interleaved runs, each in a fresh process ({amx}). "
        f"Read bandwidth (numpy streaming sum, best of 5 over 512 MiB): {bandwidth[1]:.1f} GB/s with 1 thread, "
        f"{bandwidth[2]:.1f} GB/s with 2. The shares use the faster of repack / plain at that thread count; "
        "'repacked MiB' is what llama.cpp put in CPU_REPACK / AMX buffers (the rest stays in CPU_Mapped). "
        "A speed that doubles from 1 to 2 threads while reading the same bytes, or rises with a faster kernel, "
        "is bound by compute, not by memory.",
    )


if __name__ == "__main__":
    main()
