"""Generation speed against the memory-bandwidth bound: SmolLM2-135M as F16, Q8_0 and Q4_K_M.

    python benchmarks/llm_bandwidth.py [--out /tmp/edgeinfer-bench] [--runs 3]

`bench`'s figures for each file (pp64 / tg64): the machine's streaming-read bandwidth, the weight
bytes one generated token reads, the bound they give (bandwidth / bytes) and the share reached.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import parse_args, write_section  # noqa: E402


def main() -> None:
    from edgeinfer.compress.gguf_quant import GgufQuantConfig
    from edgeinfer.core.gguf_types import GgufType
    from edgeinfer.examples.smollm2 import hf_dir
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.llm import bench_gguf, kquantize, llama_settings

    args = parse_args(__doc__, runs=3)
    f16 = args.out / "smollm2-f16.gguf"
    if not f16.exists():
        export_model(str(hf_dir()), f16)
    files = {"F16": f16}
    for t in (GgufType.Q8_0, GgufType.Q4_K_M):
        files[t.value] = args.out / f"smollm2-{t.value.lower()}.gguf"
        kquantize(f16, files[t.value], GgufQuantConfig(t), force=True)
    rows = []
    for name, path in files.items():
        r = bench_gguf(path, llama_settings(), n_prompt=64, n_gen=64, reps=args.runs)
        rows.append(
            [
                name,
                f"{r['file_size_bytes'] / 2**20:.1f}",
                f"{r['tg_tokens_per_s']:.1f}",
                f"{r['read_bandwidth_gb_s']:.1f}",
                f"{r['bytes_per_token'] / 2**20:.1f}",
                f"{r['bandwidth_bound_tokens_per_s']:.0f}",
                f"{r['share_of_bound']:.0%}",
            ]
        )
        print(rows[-1], flush=True)
    write_section(
        "LLM generation against the memory-bandwidth bound: SmolLM2-135M",
        f"python benchmarks/llm_bandwidth.py --runs {args.runs}",
        ["type", "file MiB", "tg64 tokens/s", "read GB/s", "MiB per token", "bound tokens/s", "share of bound"],
        rows,
        "The bound assumes every weight a token touches is read from memory once per token (the KV cache, "
        "small at this context, is left out); the read bandwidth is a multi-threaded numpy streaming sum, "
        "best of 5 passes over 512 MiB.",
    )


if __name__ == "__main__":
    main()
