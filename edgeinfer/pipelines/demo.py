"""`edgeinfer demo`: the whole path on a real, small model in well under two minutes on 2 cores.

LeNet-5 is trained on scikit-learn's digits, exported and validated, quantized to static INT8,
pruned (50% of channels, fine-tuned) and quantization-aware trained, and every variant's
accuracy and interleaved latency land in one table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgeinfer.core.progress import Progress


class _StatusLine(Progress):
    """Each stage of a pipeline the demo calls replaces the text of the demo's status line."""

    def __init__(self, status) -> None:
        self.status = status

    def stage(self, text: str) -> None:
        self.status.update(text)


def run_demo(out: Path, runs: int, console: Console) -> dict:
    import torch

    from edgeinfer.core.measure import interleaved, percentiles
    from edgeinfer.examples import digits
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.quantize import quantize_model
    from edgeinfer.pipelines.target import onnx_runner
    from edgeinfer.pipelines.train import prune_model, qat_model

    out.mkdir(parents=True, exist_ok=True)
    _, x_test, _, y_test = digits.load_split()
    with console.status("training LeNet-5 on the digits data") as status:
        model = digits.trained_lenet(
            progress=lambda e, n, loss: status.update(
                f"training LeNet-5 on the digits data: epoch {e}/{n}, loss {loss:.3f}"
            )
        )
    torch_acc = digits.accuracy(model, x_test, y_test)
    console.print(f"trained LeNet-5: test accuracy {torch_acc:.4f} on {len(y_test)} held-out images")

    onnx_path = out / "lenet.onnx"
    with console.status("exporting and validating") as status:
        art = export_model("edgeinfer.examples.digits:lenet", onnx_path, force=True, progress=_StatusLine(status))
    v = art.validation
    console.print(
        f"exported {onnx_path}: validated against PyTorch, max abs diff {v['max_abs_diff']:.2g}, "
        f"min cosine {v['min_cosine']:.6f}"
    )
    eval_npz = digits.save_eval_npz(out / "digits-test.npz")

    calib = digits.save_calib_npz(out / "digits-calib.npz")
    int8_path = out / "lenet-int8.onnx"
    with console.status("quantizing to static INT8 (QDQ), calibrated on 128 training images") as status:
        quantize_model(
            onnx_path,
            int8_path,
            method="static",
            calib=str(calib),
            force=True,
            runs=10,
            progress=_StatusLine(status),
        )

    factory, data = "edgeinfer.examples.digits:lenet", "edgeinfer.examples.digits:loaders"
    pruned_path = out / "lenet-pruned50.onnx"
    with console.status("pruning 50% of the channels (Torch-Pruning) and fine-tuning 2 epochs") as status:
        prune_model(
            factory,
            pruned_path,
            data,
            ratio=0.5,
            finetune_epochs=2,
            runs=5,
            force=True,
            progress=_StatusLine(status),
        )
    qat_path = out / "lenet-qat.onnx"
    with console.status("quantization-aware training (1 epoch), exported as INT8 QDQ") as status:
        qat_model(factory, qat_path, data, epochs=1, runs=5, force=True, progress=_StatusLine(status))

    paths = {"fp32": onnx_path, "int8": int8_path, "pruned": pruned_path, "qat": qat_path}
    runners = {name: onnx_runner(path) for name, path in paths.items()}
    accuracy = {}
    for name, runner in runners.items():
        logits = runner.run({"input": x_test})[runner.output_names[0]]
        accuracy[name] = float((logits.argmax(1) == y_test).mean())

    latency: dict[str, dict[int, float]] = {"torch": {}, **{name: {} for name in runners}}
    for batch in (1, 64):
        x_np = x_test[:batch]
        x_t = torch.from_numpy(x_np)

        def torch_run():
            with torch.inference_mode():
                model(x_t)

        fns: dict[str, Callable[[], object]] = {"torch": torch_run}
        fns.update({name: (lambda r=r: r.session.run(None, {"input": x_np})) for name, r in runners.items()})
        with console.status(f"timing batch {batch}: PyTorch and the ONNX Runtime variants, interleaved, {runs} runs"):
            times = interleaved(fns, runs=runs, warmup=5)
        for name in fns:
            latency[name][batch] = percentiles(times[name])["p50"]

    table = Table(title="edgeinfer demo: LeNet-5 on digits (CPU)")
    for col in ("model", "runtime", "size", "top-1", "p50 b1", "p50 b64", "vs PyTorch b1 / b64"):
        table.add_column(col, justify="left" if col in ("model", "runtime") else "right")
    labels = {"fp32": "fp32", "int8": "int8 static PTQ", "pruned": "pruned 50% + fine-tune", "qat": "int8 QAT"}
    rows = [("fp32", "pytorch eager", "", torch_acc, "torch")]
    rows += [(labels[k], "onnxruntime", f"{paths[k].stat().st_size / 1024:.0f} KiB", accuracy[k], k) for k in paths]
    for label, runtime, size, acc, key in rows:
        b1, b64 = latency[key][1], latency[key][64]
        ratio = f"{latency['torch'][1] / b1:.2f}x / {latency['torch'][64] / b64:.2f}x"
        if key not in ("torch", "fp32") and (b1 > latency["fp32"][1] or b64 > latency["fp32"][64]):
            ratio += " [red](slower than fp32)[/red]"
        table.add_row(label, runtime, size, f"{acc:.4f}", f"{b1:.3f} ms", f"{b64:.3f} ms", ratio)
    summary = {
        "torch_accuracy": torch_acc,
        "onnx_accuracy": accuracy["fp32"],
        "int8_accuracy": accuracy["int8"],
        "pruned_accuracy": accuracy["pruned"],
        "qat_accuracy": accuracy["qat"],
        "onnx": str(onnx_path),
        "int8": str(int8_path),
        "pruned": str(pruned_path),
        "qat": str(qat_path),
        "eval": str(eval_npz),
        "latency_ms": latency,
    }
    console.print(table)

    # The engine decides: every candidate for this machine's profile, the fastest within 1 point. On
    # ONNX Runtime: the demo's bundle is the one the README then checks on an emulated ARM64 board,
    # whose kit carries onnxruntime (OpenVINO's candidates: `optimize --device host`).
    from dataclasses import replace

    from edgeinfer.devices import get_profile
    from edgeinfer.pipelines.optimize import Budgets, optimize

    bundle = out / "lenet-bundle"
    with console.status("optimize: measuring every candidate for x86-avx512-vnni within 1 point of fp32") as status:
        report = optimize(
            "edgeinfer.examples.digits:lenet",
            bundle,
            data=str(eval_npz),
            profile=replace(get_profile("x86-avx512-vnni"), openvino_device=None),
            budgets=Budgets(max_drop=0.01),
            runs=10,
            force=True,
            progress=_StatusLine(status),
        )
    chosen = next(c for c in report.candidates if c.name == report.chosen)
    console.print(
        f"optimize chose {chosen.name} of {len(report.candidates)} candidates (p50 {chosen.p50_ms:.3f} ms on the "
        f"eval batch, drop {chosen.drop:.4f}) and wrote the bundle {bundle}/ ; check it: edgeinfer verify {bundle}"
    )
    summary["bundle"] = str(bundle)
    summary["chosen"] = report.chosen
    console.print(
        f"files in {out}/ ; next: edgeinfer bench {onnx_path} --baseline auto ; "
        f"edgeinfer check {onnx_path} {int8_path} --data {eval_npz} --max-drop 0.01"
    )
    return summary
