"""edgeinfer against the tools a user would pick instead, on all-MiniLM-L6-v2 (real weights).

    python benchmarks/peers.py [--runs 20] [--out /tmp/edgeinfer-bench] [--models=minilm,vit]

- edgeinfer: the README's path (`export`, then `quantize --method dynamic`), and `optimize-graph`
  on each timed shape; also the torch.export graph that `export` wrote before (FP32 baseline).
- Optimum: its documented recipe, `ORTModelForFeatureExtraction(export=True)`, `ORTOptimizer` at
  O2, and `ORTQuantizer` with `AutoQuantizationConfig.avx512_vnni(is_static=False,
  per_channel=True)`. optimum-onnx needs transformers < 4.58 (this project has 5.x), so it runs in
  its own venv, made by this script and cached in ~/.cache/edgeinfer/peers-venv; its files are
  then timed here, by the same ONNX Runtime, in the same loop as everything else.
- eager PyTorch (transformers' BertModel, the same weights).
- Then the same for ViT-Small's shape (random weights) at batch 1 and 8, both exporters.

Every variant is timed interleaved at batch 1 x 32 (latency) and 16 x 128 (throughput), with a
bootstrap 95% interval on each ratio; quality is the mean-pooled sentence embedding's cosine to
PyTorch on the 250 shipped sentences, and the agreement of their top-10 nearest neighbours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import minilm_dir, parse_args, write_section  # noqa: E402

# What works together for Optimum's recipe (checked 2026-11-30): optimum-onnx 0.1.0 pins
# optimum 2.1 and transformers < 4.58; torch and onnxruntime come from this environment.
PEER_REQUIREMENTS = ["optimum-onnx[onnxruntime]==0.1.0", "transformers>=4.45,<4.58"]
VENV = Path.home() / ".cache" / "edgeinfer" / "peers-venv"

# Run inside the peer venv: Optimum's export, O2 optimization and VNNI dynamic quantization.
OPTIMUM_RECIPE = r"""
import sys
from pathlib import Path

# The peer venv sees this machine's packages (torch, onnxruntime); its diffusers, built for a newer
# huggingface_hub than Optimum's, fails on import, and Optimum imports it when it is there. A text
# or image model does not need it: hidden.
sys.modules["diffusers"] = None
import onnx
from onnxruntime.quantization import onnx_quantizer

# ONNX Runtime 1.32's quantizer cannot infer types through Optimum's fused contrib ops and asks for
# DefaultTensorType (its own error message says so); Optimum's config has no field for it.
_init = onnx_quantizer.ONNXQuantizer.__init__
def _init_with_default_type(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.extra_options.setdefault("DefaultTensorType", onnx.TensorProto.FLOAT)
onnx_quantizer.ONNXQuantizer.__init__ = _init_with_default_type

import optimum.onnxruntime as ortm
from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig

src, out, model_class = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
model = getattr(ortm, model_class).from_pretrained(src, export=True)
model.save_pretrained(out / "export")
optimizer = ORTOptimizer.from_pretrained(model)
optimizer.optimize(save_dir=out / "o2", optimization_config=OptimizationConfig(optimization_level=2))
quantizer = ORTQuantizer.from_pretrained(out / "o2", file_name="model_optimized.onnx")
quantizer.quantize(
    save_dir=out / "o2-int8",
    quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True),
)
"""


def peer_python() -> Path:
    """The peer venv's python, made once (system site-packages for torch and onnxruntime)."""
    python = VENV / "bin" / "python"
    stamp = VENV / "requirements.json"
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == PEER_REQUIREMENTS:
        return python
    print(f"making the peer venv {VENV} ({', '.join(PEER_REQUIREMENTS)})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    stamp.write_text(json.dumps(PEER_REQUIREMENTS))
    return python


def optimum_files(src: Path, out: Path, model_class: str = "ORTModelForFeatureExtraction") -> dict[str, Path]:
    files = {
        "Optimum export, FP32": out / "export" / "model.onnx",
        "Optimum O2, FP32": out / "o2" / "model_optimized.onnx",
        "Optimum O2 + VNNI dynamic INT8": out / "o2-int8" / "model_optimized_quantized.onnx",
    }
    if not all(f.exists() for f in files.values()):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([str(peer_python()), "-c", OPTIMUM_RECIPE, str(src), str(out), model_class], check=True, env=env)
    return files


def cli(*args: str) -> None:
    """One edgeinfer command, run as a user runs it (a fresh process), overwriting its output."""
    subprocess.run([sys.executable, "-m", "edgeinfer", *args, "--force"], check=True, stdout=subprocess.DEVNULL)


def edgeinfer_files(src: Path, out: Path) -> dict[str, Path]:
    """The README's path, run through the CLI as a user would."""

    fp32, int8, dyn = out / "minilm.onnx", out / "minilm-int8.onnx", out / "minilm-torch-export.onnx"
    cli("export", str(src), "-o", str(fp32))
    cli("quantize", str(fp32), "-o", str(int8), "--method", "dynamic")
    cli("export", str(src), "-o", str(dyn), "--exporter", "dynamo")
    files = {
        "edgeinfer export (torch.export graph, before), FP32": dyn,
        "edgeinfer export, FP32": fp32,
        "edgeinfer export + quantize --method dynamic": int8,
    }
    for batch, seq in ((1, 32), (16, 128)):
        opt, opt_int8 = out / f"minilm-opt-b{batch}.onnx", out / f"minilm-opt-b{batch}-int8.onnx"
        shape = ["--batch", str(batch), "--sequence", str(seq)]
        cli("optimize-graph", str(fp32), "-o", str(opt), *shape)
        cli("quantize", str(opt), "-o", str(opt_int8), "--method", "dynamic")
        files[f"edgeinfer + optimize-graph (b{batch} x {seq}), FP32"] = opt
        files[f"edgeinfer + optimize-graph (b{batch} x {seq}) + quantize dynamic"] = opt_int8
    fp16 = out / "minilm-fp16.onnx"
    cli("quantize", str(fp32), "-o", str(fp16), "--method", "fp16")
    files["edgeinfer quantize --method fp16"] = fp16
    return files


def quality(files: dict[str, Path], model, tokenizer) -> dict[str, tuple[float, float]]:
    """Mean cosine of mean-pooled sentence embeddings to PyTorch, and top-10 neighbour agreement."""
    import numpy as np
    import torch

    from edgeinfer.examples import SENTENCES
    from edgeinfer.runtime.ort import OrtRunner

    sentences = [s for s in SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]
    enc = tokenizer(sentences, padding=True, return_tensors="np")
    mask = enc["attention_mask"][..., None].astype(np.float32)

    def pool(hidden: np.ndarray) -> np.ndarray:
        v = (hidden * mask).sum(1) / mask.sum(1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    with torch.inference_mode():
        ref = pool(model(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy())
    top_ref = np.argsort(-(ref @ ref.T), axis=1)[:, 1:11]
    out = {}
    for name, path in files.items():
        runner = OrtRunner(path, profile_first_run=False)
        feeds = {i.name: enc[i.name] for i in runner.inputs}
        emb = pool(np.asarray(next(iter(runner.run(feeds).values())), dtype=np.float32))
        top = np.argsort(-(emb @ emb.T), axis=1)[:, 1:11]
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, top_ref)])
        out[name] = (float((emb * ref).sum(1).mean()), float(overlap))
    return out


def timings(files: dict[str, Path], model, batch: int, seq: int, runs: int) -> dict[str, list[float]]:
    import numpy as np
    import torch

    from edgeinfer.core.measure import interleaved
    from edgeinfer.runtime.ort import OrtRunner

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 29000, (batch, seq))
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    tfeeds = {k: torch.from_numpy(v) for k, v in feeds.items()}

    def eager():
        with torch.inference_mode():
            model(**tfeeds)

    fns: dict[str, Callable[[], object]] = {"eager PyTorch": eager}
    for name, path in files.items():
        runner = OrtRunner(path, threads=2, profile_first_run=False)
        mine = {i.name: feeds[i.name] for i in runner.inputs}
        fns[name] = lambda r=runner, f=mine: r.session.run(None, f)
    return interleaved(fns, runs=runs, warmup=3)


def main() -> None:
    import numpy as np
    import torch
    import transformers

    from edgeinfer.core.measure import speedup_ci

    args = parse_args(__doc__)
    torch.set_num_threads(2)
    src = minilm_dir()
    files = {**edgeinfer_files(src, args.out), **optimum_files(src, args.out / "optimum-minilm")}
    model = transformers.AutoModel.from_pretrained(str(src)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(src))
    quality_of = quality(files, model, tokenizer)
    rows = []
    summary = {}
    for batch, seq, runs in ((1, 32, args.runs * 5), (16, 128, args.runs)):
        times = timings(files, model, batch, seq, runs)
        best_peer = max((n for n in times if n.startswith("Optimum")), key=lambda n: 1 / float(np.median(times[n])))
        for name, t in times.items():
            p50 = float(np.median(t)) * 1e3
            vs_peer, lo, hi = speedup_ci(times[best_peer], t)
            vs_eager, elo, ehi = speedup_ci(times["eager PyTorch"], t)
            cos, top10 = quality_of.get(name, (1.0, 1.0))
            rows.append(
                [
                    f"b{batch} x {seq}",
                    name,
                    f"{p50:.2f} ms",
                    f"{vs_peer:.2f}x ({lo:.2f}-{hi:.2f})",
                    f"{vs_eager:.2f}x ({elo:.2f}-{ehi:.2f})",
                    f"{cos:.4f}",
                    f"{top10:.3f}",
                ]
            )
            summary[f"b{batch}x{seq} {name}"] = {"p50_ms": p50, "vs_best_optimum": vs_peer, "vs_eager": vs_eager}
        summary[f"b{batch}x{seq} best Optimum"] = best_peer
    for r in rows:
        print(" | ".join(r), flush=True)
    write_section(
        "Transformers against Optimum and eager PyTorch",
        f"python benchmarks/peers.py --runs {args.runs}",
        ["shape", "variant", "p50", "vs fastest Optimum variant (95% CI)", "vs eager PyTorch", "cosine", "top-10"],
        rows,
        "all-MiniLM-L6-v2, real weights. Every variant timed interleaved in one process by the same ONNX Runtime "
        "(2 threads); ratios > 1 mean faster. Quality: mean cosine of mean-pooled embeddings to PyTorch on the "
        "250 shipped sentences, and top-10 neighbour agreement. Optimum's files come from its documented recipe "
        "in its own venv (optimum-onnx 0.1.0, transformers 4.57). Why the graphs differ: docs/transformer-speed.md.",
    )
    print(json.dumps(summary))


def vit_folder(out: Path) -> Path:
    """ViT-Small's shape (384 hidden, 12 layers, 6 heads, 224 px, patch 16) with seeded random
    weights: no real ViT weights are reachable offline, and speed does not depend on them."""
    import torch
    import transformers

    folder = out / "vit-small-random"
    if not (folder / "model.safetensors").exists():
        torch.manual_seed(0)
        config = transformers.ViTConfig(
            hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536
        )
        config.num_labels = 1000
        transformers.ViTForImageClassification(config).save_pretrained(folder, safe_serialization=True)
    if not (folder / "preprocessor_config.json").exists():
        transformers.ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def vit_section(args) -> None:
    """The same comparison for a vision transformer, at batch 1 and 8."""
    import numpy as np
    import torch
    import transformers

    from edgeinfer.core.measure import interleaved, speedup_ci
    from edgeinfer.runtime.ort import OrtRunner

    src = vit_folder(args.out)

    out = args.out
    files = {}
    for exporter in ("dynamo", "torchscript"):
        fp32 = out / f"vit-{exporter}.onnx"
        cli("export", str(src), "-o", str(fp32), "--exporter", exporter)
        files[f"edgeinfer export --exporter {exporter}, FP32"] = fp32
    default = out / "vit.onnx"
    cli("export", str(src), "-o", str(default))
    files["edgeinfer export (auto), FP32"] = default
    int8 = out / "vit-int8.onnx"
    cli("quantize", str(default), "-o", str(int8), "--method", "dynamic")
    files["edgeinfer export + quantize --method dynamic"] = int8
    for batch in (1, 8):
        opt, opt_int8 = out / f"vit-opt-b{batch}.onnx", out / f"vit-opt-b{batch}-int8.onnx"
        cli("optimize-graph", str(default), "-o", str(opt), "--batch", str(batch))
        cli("quantize", str(opt), "-o", str(opt_int8), "--method", "dynamic")
        files[f"edgeinfer + optimize-graph (b{batch}) + quantize dynamic"] = opt_int8
    files.update(optimum_files(src, out / "optimum-vit", "ORTModelForImageClassification"))
    model = transformers.ViTForImageClassification.from_pretrained(str(src)).eval()
    rng = np.random.default_rng(0)
    rows = []
    for batch, runs in ((1, args.runs * 2), (8, max(args.runs // 2, 5))):
        pixels = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        with torch.inference_mode():
            ref = model(pixel_values=torch.from_numpy(pixels)).logits.numpy()

        def eager(x=torch.from_numpy(pixels)):
            with torch.inference_mode():
                model(pixel_values=x)

        fns: dict[str, Callable[[], object]] = {"eager PyTorch": eager}
        cosine = {"eager PyTorch": 1.0}
        for name, path in files.items():
            runner = OrtRunner(path, threads=2, profile_first_run=False)
            got = np.asarray(next(iter(runner.run({"pixel_values": pixels}).values())), dtype=np.float64)
            cosine[name] = float(
                np.mean(np.sum(got * ref, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1))
            )
            fns[name] = lambda r=runner, f={"pixel_values": pixels}: r.session.run(None, f)
        times = interleaved(fns, runs=runs, warmup=2)
        best_peer = max((n for n in times if n.startswith("Optimum")), key=lambda n: -float(np.median(times[n])))
        for name, t in times.items():
            vs_peer, lo, hi = speedup_ci(times[best_peer], t)
            vs_eager, elo, ehi = speedup_ci(times["eager PyTorch"], t)
            rows.append(
                [
                    f"b{batch} x 3x224x224",
                    name,
                    f"{float(np.median(t)) * 1e3:.1f} ms",
                    f"{vs_peer:.2f}x ({lo:.2f}-{hi:.2f})",
                    f"{vs_eager:.2f}x ({elo:.2f}-{ehi:.2f})",
                    f"{cosine[name]:.4f}",
                ]
            )
    for r in rows:
        print(" | ".join(r), flush=True)
    write_section(
        "ViT-Small against Optimum and eager PyTorch",
        f"python benchmarks/peers.py --runs {args.runs}",
        ["shape", "variant", "p50", "vs fastest Optimum variant (95% CI)", "vs eager PyTorch", "logit cosine"],
        rows,
        "ViT-Small's shape with seeded random weights (no real weights offline; speed does not depend on them), "
        "random images. Timed interleaved in one process by the same ONNX Runtime (2 threads). Quality: mean "
        "cosine of the logits to PyTorch's on the timed batch.",
    )


if __name__ == "__main__":
    # --models=minilm,vit (the default: both) runs one section alone.
    chosen = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--models=")), "minilm,vit").split(",")
    if "minilm" in chosen:
        main()
    if "vit" in chosen:
        vit_section(parse_args(__doc__))
