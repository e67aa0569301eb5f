"""Train-time compression on digits and MiniLM: pruning, distillation, QAT, with real latency.

    python benchmarks/train_compress.py [--out /tmp/edgeinfer-bench] [--runs 30] [--only prune,distill,minilm,qat]

1. Structured pruning (50% of channels) of the small ResNet, fine-tuned 3 epochs: accuracy and
   ONNX Runtime latency at batch 1 and 32, interleaved with the unpruned model.
2. Unstructured 50% sparsity of the same ResNet: latency (the honest "no faster") and gzip size.
3. Distillation: half-width LeNet-5 with soft targets vs. the same student on labels only, 3 seeds.
4. MiniLM-L6 -> 3 layers distilled on 200 shipped sentences; cosine with the teacher on the other 50.
5. QAT vs static PTQ, both per-tensor INT8, on the depthwise-separable CNN.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import minilm_dir, parse_args, write_section  # noqa: E402

from edgeinfer.core.progress import Progress  # noqa: E402

DATA = "edgeinfer.examples.digits:loaders"


def _latency(paths: dict[str, Path], x, runs: int) -> dict[str, list[float]]:
    from edgeinfer.core.measure import interleaved
    from edgeinfer.runtime.ort import OrtRunner

    runners = {k: OrtRunner(p) for k, p in paths.items()}
    return interleaved(
        {k: (lambda r=r: r.session.run(None, {"input": x})) for k, r in runners.items()}, runs=runs, warmup=5
    )


def _onnx_accuracy(path: Path, x, y) -> float:
    from edgeinfer.runtime.ort import OrtRunner

    r = OrtRunner(path)
    return float((r.run({"input": x})[r.output_names[0]].argmax(1) == y).mean())


class _PrintEpochs(Progress):
    def __init__(self, label: str) -> None:
        self.label = label

    def epoch(self, row) -> None:
        print(self.label, dict(row), flush=True)


def pruning(args) -> None:

    from edgeinfer.core.measure import percentiles, speedup_ci
    from edgeinfer.examples.digits import load_split
    from edgeinfer.pipelines.train import export_module, load_model, prune_model

    _, x_test, _, y_test = load_split()
    spec = "edgeinfer.examples.digits:resnet_trained"
    module, inputs, axes = load_model(spec)
    base = args.out / "resnet.onnx"
    export_module(module, inputs, axes, base, {"kind": "factory", "factory": spec}, [])
    results = {}
    for method in ("structured", "unstructured"):
        out = args.out / f"resnet-{method}50.onnx"
        r = prune_model(
            spec,
            out,
            DATA,
            method=method,
            ratio=0.5,
            finetune_epochs=3,
            runs=5,
            force=True,
            progress=_PrintEpochs(method),
        )
        results[method] = (out, r)
    rows = []
    acc_base = _onnx_accuracy(base, x_test, y_test)
    for batch in (1, 32):
        x = x_test[:batch]
        times = _latency({"base": base, **{m: p for m, (p, _) in results.items()}}, x, args.runs)
        for method, (path, r) in results.items():
            point, lo, hi = speedup_ci(times["base"], times[method])
            rep = r["report"]
            macs = f"{rep.macs_after / rep.macs_before:.2f}x" if method == "structured" else "1.00x (zeros)"
            rows.append(
                [
                    method,
                    str(batch),
                    f"{percentiles(times['base'])['p50']:.3f} ms",
                    f"{percentiles(times[method])['p50']:.3f} ms",
                    f"{point:.2f}x ({lo:.2f}-{hi:.2f})",
                    macs,
                    f"{acc_base:.4f}",
                    f"{_onnx_accuracy(path, x_test, y_test):.4f}",
                    f"{len(gzip.compress(base.read_bytes())) / 1024:.0f} -> "
                    f"{len(gzip.compress(path.read_bytes())) / 1024:.0f} KiB",
                ]
            )
            print(rows[-1], flush=True)
    write_section(
        "Pruning the digits ResNet (50%), ONNX Runtime",
        "python benchmarks/train_compress.py",
        [
            "method",
            "batch",
            "unpruned p50",
            "pruned p50",
            "speedup (95% CI)",
            "MACs",
            "accuracy before",
            "accuracy after",
            "gzip size",
        ],
        rows,
        f"Small ResNet (3 stages x 2 residual blocks, 32/64/128 channels) on 32x32 digits, pruned with "
        f"Torch-Pruning (L2 magnitude, uniform) then fine-tuned 3 epochs; {args.runs} interleaved runs, "
        "bootstrap CI. Issue targets: structured within 1 point and >= 1.6x faster; unstructured: the "
        "honest figure that zeros do not speed up ONNX Runtime on a CPU.",
    )


def distillation(args) -> None:
    import numpy as np

    from edgeinfer.pipelines.train import distill_model

    rows, kd, ce = [], [], []
    for seed in (0, 1, 2):
        for alpha, bucket in ((0.5, kd), (0.0, ce)):
            r = distill_model(
                "edgeinfer.examples.digits:lenet",
                "edgeinfer.examples.digits:lenet_half",
                args.out / f"student-a{alpha}-s{seed}.onnx",
                DATA,
                epochs=10,
                alpha=alpha,
                temperature=8.0,
                lr=5e-3,
                seed=seed,
                runs=5,
                force=True,
            )
            bucket.append(r["metrics"]["student_accuracy"])
            teacher = r["metrics"]["teacher_accuracy"]
        rows.append([str(seed), f"{kd[-1]:.4f}", f"{ce[-1]:.4f}"])
        print(rows[-1], flush=True)
    rows.append(["mean", f"{np.mean(kd):.4f}", f"{np.mean(ce):.4f}"])
    write_section(
        "Distillation: half-width LeNet-5 student on digits",
        "python benchmarks/train_compress.py",
        ["seed", "distilled (T=8, alpha=0.5)", "labels only (alpha=0)"],
        rows,
        f"Teacher: LeNet-5 (test accuracy {teacher:.4f}); student: half the channels and units, from random "
        "weights (seeded), 10 epochs at lr 5e-3, same seed and data order in both columns. Before this run, "
        "T=4/alpha 0.7, T=2/alpha 0.5 and T=4 or 8/alpha 0.9 (lr 2e-3 and 5e-3) were tried on 2-3 seeds; "
        "none beat labels-only by more than noise. Issue target: distilled beats labels-only on the mean "
        "over 3 seeds.",
    )


def minilm(args) -> None:

    import numpy as np

    from edgeinfer.compress.distill import distill_encoder
    from edgeinfer.examples import SENTENCES
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.runtime.ort import OrtRunner

    teacher_dir = minilm_dir()
    sentences = SENTENCES.read_text().splitlines()
    train, held = sentences[:200], sentences[200:]
    student_dir = args.out / "minilm-l3"
    fig = distill_encoder(teacher_dir, student_dir, layers=3, sentences=train, epochs=10)
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(teacher_dir))
    enc = tok(held, padding=True, return_tensors="np")
    embs = {}
    for name, src in (("teacher", teacher_dir), ("student", student_dir)):
        path = args.out / f"minilm-{name}.onnx"
        export_model(str(src), path, force=True)
        r = OrtRunner(path)
        feeds = {i.name: enc[i.name].astype(np.int64) for i in r.inputs}
        hidden = r.run(feeds)[r.output_names[0]]
        m = enc["attention_mask"][..., None]
        embs[name] = (hidden * m).sum(1) / m.sum(1)
    a, b = embs["teacher"], embs["student"]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    rows = [
        [
            "MiniLM-L6 -> 3 layers",
            f"{fig['teacher_params']:,} -> {fig['student_params']:,}",
            f"{fig['history'][-1]['mean_cosine']:.4f}",
            f"{cos.mean():.4f} (min {cos.min():.4f})",
        ]
    ]
    print(rows, flush=True)
    write_section(
        "Distillation: MiniLM-L6 into 3 layers",
        "python benchmarks/train_compress.py",
        ["model", "parameters", "cosine on the 200 training sentences", "cosine on 50 held-out (ONNX)"],
        rows,
        "Student layers initialized from teacher layers 0, 2, 5; 10 epochs of cosine + MSE on "
        "mean-pooled embeddings; held-out figures from both exported ONNX models in ONNX Runtime. "
        "Issue target: mean cosine >= 0.9.",
    )


def qat_vs_ptq(args) -> None:
    from edgeinfer.examples.digits import load_split, save_calib_npz
    from edgeinfer.pipelines.quantize import quantize_model
    from edgeinfer.pipelines.train import export_module, load_model, qat_model

    _, x_test, _, y_test = load_split()
    spec = "edgeinfer.examples.digits:dscnn_trained"
    module, inputs, axes = load_model(spec)
    fp32 = args.out / "dscnn.onnx"
    export_module(module, inputs, axes, fp32, {"kind": "factory", "factory": spec}, [])
    calib = save_calib_npz(args.out / "calib.npz", samples=256)
    ptq = args.out / "dscnn-ptq-pt.onnx"
    quantize_model(
        fp32,
        ptq,
        method="static",
        calib=str(calib),
        per_channel=False,
        reduce_range=False,
        force=True,
        runs=5,
    )
    qat = args.out / "dscnn-qat-pt.onnx"
    qat_model(spec, qat, DATA, epochs=3, per_channel=False, runs=5, force=True)
    a_fp, a_ptq, a_qat = (_onnx_accuracy(p, x_test, y_test) for p in (fp32, ptq, qat))
    recovered = (a_qat - a_ptq) / (a_fp - a_ptq) if a_fp > a_ptq else float("nan")
    rows = [
        ["float", f"{a_fp:.4f}", "-"],
        ["static PTQ, per-tensor INT8", f"{a_ptq:.4f}", f"{(a_ptq - a_fp) * 100:+.2f} pts"],
        ["QAT, per-tensor INT8 (3 epochs)", f"{a_qat:.4f}", f"{(a_qat - a_fp) * 100:+.2f} pts"],
        ["share of the PTQ loss recovered", f"{recovered:.0%}" if recovered == recovered else "n/a", ""],
    ]
    print(rows, flush=True)
    write_section(
        "QAT vs static PTQ: depthwise-separable CNN, per-tensor INT8",
        "python benchmarks/train_compress.py",
        ["model", "ONNX Runtime test accuracy", "vs float"],
        rows,
        "Both use uint8 asymmetric activations and int8 symmetric per-tensor weights; PTQ calibrated "
        "(minmax) on 256 training images, QAT fine-tuned 3 epochs from the float weights with BatchNorm "
        "folded. Issue target: QAT recovers at least half of a PTQ loss of at least 1 point.",
    )


def main() -> None:
    args = parse_args(__doc__, runs=30)
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
    for name, fn in (("prune", pruning), ("distill", distillation), ("minilm", minilm), ("qat", qat_vs_ptq)):
        if only is None or name in only:
            fn(args)


if __name__ == "__main__":
    main()
