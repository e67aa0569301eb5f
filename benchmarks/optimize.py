"""What `optimize` decides for each reference model on this machine, every candidate's figures.

    python benchmarks/optimize.py [--out /tmp/edgeinfer-bench] [--runs 20] [--only lenet,resnet,minilm,smollm2]

1. The digits LeNet-5 and ResNet on x86-avx512-vnni, --max-drop 0.01 (ResNet also with 0.0, where
   static INT8 misses the budget and its keep-in-float sibling is tried), with pruning candidates.
2. MiniLM-L6 (embeddings; drop = 1 - mean cosine) with --max-drop 0.01.
3. SmolLM2-135M: the F16 GGUF against the llama.cpp types, --max-kld 0.1, on the shipped sentences.

Every run measures afresh (use_cache=False); the tables are the reports' candidate rows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import minilm_dir, parse_args, write_section  # noqa: E402

HEADER = ["candidate", "p50 ms", "speedup vs baseline (95% CI)", "drop / KL", "size MiB", "peak MiB", "verdict"]


def _rows(report) -> list[list[str]]:
    rows = []
    for c in report.candidates:
        speed = f"{c.speedup:.2f}x ({c.speedup_ci95[0]:.2f}-{c.speedup_ci95[1]:.2f})" if c.speedup_ci95 else "-"
        verdict = "**chosen**" if c.name == report.chosen else ("met" if c.met else "; ".join(c.failed))
        rows.append(
            [
                c.name,
                f"{c.p50_ms:.3f}" if c.p50_ms is not None else "-",
                speed,
                f"{c.drop:.4f}" if c.drop is not None else "-",
                f"{c.size_bytes / 2**20:.2f}" if c.size_bytes else "-",
                f"{c.memory_mb:.0f}" if c.memory_mb is not None else "-",
                verdict.replace("|", "/"),
            ]
        )
    return rows


def _run(title: str, source: str, command: str, notes: str, args, **kw) -> None:
    from edgeinfer.devices import get_profile
    from edgeinfer.pipelines.optimize import optimize

    start = time.perf_counter()
    report = optimize(
        source, args.out / title.split(":")[0].replace(" ", "-"), profile=get_profile("x86-avx512-vnni"),
        runs=args.runs, use_cache=False, force=True, **kw,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    print(title, report.chosen, f"{seconds:.0f} s", flush=True)
    write_section(f"optimize: {title}", command, HEADER, _rows(report), f"{notes} Search took {seconds:.0f} s.")


def main() -> None:
    from edgeinfer.examples.digits import save_eval_npz
    from edgeinfer.pipelines.optimize import Budgets

    args = parse_args(__doc__, runs=20)
    only = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")), None)
    if "--only" in sys.argv:
        only = sys.argv[sys.argv.index("--only") + 1]
    want = set((only or "lenet,resnet,minilm,smollm2").split(","))
    digits = str(save_eval_npz(args.out / "digits-test.npz"))
    cmd = "python benchmarks/optimize.py"
    if "lenet" in want:
        _run(
            "digits LeNet-5, --max-drop 0.01, with pruning", "edgeinfer.examples.digits:lenet", cmd,
            "Evaluation: 450 held-out digits, batch 8; pruning: structured 25% / 50% with 3 epochs of fine-tuning.",
            args, data=digits, budgets=Budgets(max_drop=0.01), train_data="edgeinfer.examples.digits:loaders",
        )  # fmt: skip
    if "resnet" in want:
        _run(
            "digits ResNet, --max-drop 0.0", "edgeinfer.examples.digits:resnet_trained", cmd,
            "A zero budget: every candidate must keep the FP32 accuracy; static INT8 that misses it gets a "
            "sibling with its noisiest nodes kept in float.",
            args, data=digits, budgets=Budgets(max_drop=0.0),
        )  # fmt: skip
    if "minilm" in want:
        from edgeinfer.examples import SENTENCES

        _run(
            "MiniLM-L6 embeddings, --max-drop 0.01 (1 - mean cosine)", str(minilm_dir()), cmd,
            "Evaluation: the shipped sentences, batch 8.", args, data=str(SENTENCES), budgets=Budgets(max_drop=0.01),
        )  # fmt: skip
    if "smollm2" in want:
        from edgeinfer.examples.smollm2 import hf_dir

        _run(
            "SmolLM2-135M GGUF, --max-kld 0.1", str(hf_dir()), cmd,
            "The Hugging Face folder exported to an F16 GGUF (the baseline); ms per generated token (tg32, "
            "interleaved with the baseline); peak memory of a fresh process at the profile's 4096-token context.",
            args, budgets=Budgets(max_kld=0.1),
        )  # fmt: skip


if __name__ == "__main__":
    main()
