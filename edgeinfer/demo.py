"""`edgeinfer demo`: the whole path on a real, small model in well under two minutes on 2 cores.

LeNet-5 is trained on scikit-learn's digits, exported and validated, timed against PyTorch, and
its accuracy measured in both runtimes; each compression step adds a row to the same table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


def run_demo(out: Path, runs: int, console: Console, warn) -> dict:
    import torch

    from edgeinfer.examples import digits
    from edgeinfer.export import export_model
    from edgeinfer.measure import interleaved, percentiles
    from edgeinfer.runtime.ort import OrtRunner

    out.mkdir(parents=True, exist_ok=True)
    _, x_test, _, y_test = digits.load_split()
    with console.status("training LeNet-5 on the digits data") as status:
        model = digits.trained_lenet(progress=lambda e, n, loss: status.update(
            f"training LeNet-5 on the digits data: epoch {e}/{n}, loss {loss:.3f}"))
    torch_acc = digits.accuracy(model, x_test, y_test)
    console.print(f"trained LeNet-5: test accuracy {torch_acc:.4f} on {len(y_test)} held-out images")

    onnx_path = out / "lenet.onnx"
    with console.status("exporting and validating") as status:
        art = export_model("edgeinfer.examples.digits:lenet", onnx_path, force=True,
                           stage=status.update, warn=warn)
    v = art.validation
    console.print(f"exported {onnx_path}: validated against PyTorch, max abs diff {v['max_abs_diff']:.2g}, "
                  f"min cosine {v['min_cosine']:.6f}")
    eval_npz = digits.save_eval_npz(out / "digits-test.npz")

    runner = OrtRunner(onnx_path, warn=warn)
    logits = runner.run({"input": x_test})[runner.output_names[0]]
    ort_acc = float((logits.argmax(1) == y_test).mean())

    rows = []
    for batch in (1, 64):
        x_np = x_test[:batch]
        x_t = torch.from_numpy(x_np)

        def torch_run():
            with torch.inference_mode():
                model(x_t)

        with console.status(f"timing batch {batch}: ONNX Runtime vs PyTorch, interleaved, {runs} runs"):
            times = interleaved({"ort": lambda: runner.session.run(None, {"input": x_np}), "torch": torch_run},
                                runs=runs, warmup=5)
        rows.append((batch, percentiles(times["torch"])["p50"], percentiles(times["ort"])["p50"]))

    table = Table(title="edgeinfer demo: LeNet-5 on digits (CPU)")
    for col in ("model", "runtime", "size", "top-1 accuracy", "p50 batch 1", "p50 batch 64", "speedup b1 / b64"):
        table.add_column(col, justify="left" if col in ("model", "runtime") else "right")
    size = f"{onnx_path.stat().st_size / 1024:.0f} KiB"
    table.add_row("fp32", "pytorch eager", "", f"{torch_acc:.4f}", f"{rows[0][1]:.3f} ms", f"{rows[1][1]:.3f} ms", "1.00x / 1.00x")
    table.add_row("fp32", "onnxruntime cpu", size, f"{ort_acc:.4f}", f"{rows[0][2]:.3f} ms", f"{rows[1][2]:.3f} ms",
                  f"{rows[0][1] / rows[0][2]:.2f}x / {rows[1][1] / rows[1][2]:.2f}x")
    summary = {"torch_accuracy": torch_acc, "onnx_accuracy": ort_acc, "onnx": str(onnx_path),
               "eval": str(eval_npz), "latency": rows}
    console.print(table)
    console.print(f"files in {out}/ ; try: edgeinfer bench {onnx_path} --baseline auto")
    return summary

