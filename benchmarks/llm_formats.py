"""One LLM quality table across formats: SmolLM2-135M as GGUF (llama.cpp) and as ONNX (ONNX
Runtime GenAI), every candidate scored against the F16 GGUF on the same token ids.

    python benchmarks/llm_formats.py [--out /tmp/edgeinfer-bench] [--runs 2]

GGUF: F16 (the baseline, exported from the Hugging Face folder), Q8_0, Q6_K, Q4_K_M, Q4_0.
ONNX: the model builder's INT4 at block sizes 32 and 128, INT8 (block 32) and FP32. Columns as
`edgeinfer compare` prints them: size, bits per weight, pp/tg tokens per second, peak memory of a
fresh process, perplexity, KL mean / p99 and top-1 agreement with the baseline, on 1,024 tokens
of the shipped public-domain text in windows of 256.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import parse_args, write_section  # noqa: E402


def main() -> None:
    from edgeinfer.compress.gguf_quant import GgufQuantConfig
    from edgeinfer.core.gguf_types import GgufType
    from edgeinfer.examples import PUBLIC_DOMAIN_TEXT
    from edgeinfer.examples.smollm2 import hf_dir
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.export_genai import export_genai
    from edgeinfer.pipelines.llm import kquantize
    from edgeinfer.pipelines.llm_eval import compare_llms

    args = parse_args(__doc__, runs=2)
    f16 = args.out / "smollm2-f16.gguf"
    if not f16.exists():
        export_model(str(hf_dir()), f16)
    candidates = []
    for t in (GgufType.Q8_0, GgufType.Q6_K, GgufType.Q4_K_M, GgufType.Q4_0):
        path = args.out / f"smollm2-{t.value.lower()}.gguf"
        if not path.exists():
            kquantize(f16, path, GgufQuantConfig(t))
        candidates.append(path)
    notes = {}
    for precision, block in (("int4", 32), ("int4", 128), ("int8", 32), ("fp32", 32)):
        folder = args.out / f"smollm2-onnx-{precision}-b{block}"
        if not folder.exists():
            result = export_genai(str(hf_dir()), folder, precision=precision, block_size=block)
            notes[folder.name] = result.validation["logits_parity"]
        candidates.append(folder)
    report = compare_llms(f16, candidates, PUBLIC_DOMAIN_TEXT, window=256, max_tokens=1024, reps=args.runs)
    rows = []
    for r in report.rows:
        rows.append(
            [
                Path(r.model).name,
                "llama.cpp" if r.model.endswith(".gguf") else "ONNX Runtime GenAI",
                f"{r.file_size_bytes / 2**20:.1f}",
                *r.figures(),
            ]
        )
        print(rows[-1], flush=True)
    write_section(
        "One LLM table across formats: SmolLM2-135M as GGUF and as ONNX (GenAI)",
        f"python benchmarks/llm_formats.py --runs {args.runs}",
        [
            "model",
            "runtime",
            "MiB",
            "bpw",
            "pp128 tok/s",
            "tg32 tok/s",
            "peak MiB",
            "perplexity",
            "KL mean",
            "KL p99",
            "top-1",
        ],
        rows,  # fmt: skip
        "Baseline: the F16 GGUF exported from the Hugging Face folder; every row scored on its token ids (1,024 tokens "
        "of the public-domain text, windows of 256, second halves scored). ONNX folders come from onnxruntime-genai "
        "0.18's model builder (round-to-nearest symmetric MatMulNBits, lm_head included; CPU accuracy level 4). "
        "Peak memory: a fresh process loading the model and evaluating a 248-token prompt.",
    )


if __name__ == "__main__":
    main()
