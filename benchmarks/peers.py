"""edgeinfer against the tools a user would pick instead, on all-MiniLM-L6-v2 (real weights)
and ViT-Small's shape.

    python benchmarks/peers.py [--runs 20] [--out /tmp/edgeinfer-bench] [--models=minilm,vit]

- edgeinfer: what `optimize MODEL --device host --max-drop 0.01` ships (its bundle's model on its
  runtime: ONNX Runtime or OpenVINO, in the precision it chose), and the README's plain path
  (`export`, then `quantize --method dynamic`).
- OpenVINO: its one-line default, `compile_model(exported.onnx, "CPU")` (BF16 on a CPU with BF16),
  and NNCF's documented INT8 recipe (`nncf.quantize(read_model(onnx), Dataset, model_type=TRANSFORMER)`
  on the OpenVINO model, calibrated on the shipped sentences / the timed images).
- PyTorch: eager FP32, and eager with `torch.autocast("cpu", dtype=torch.bfloat16)` where the CPU
  has BF16 (AVX512-BF16 or AMX).
- Optimum: its documented recipe, `ORTModelForFeatureExtraction(export=True)`, `ORTOptimizer` at
  O2, and `ORTQuantizer` with `AutoQuantizationConfig.avx512_vnni(is_static=False,
  per_channel=True)`. optimum-onnx needs transformers < 4.58 (this project has 5.x), so it runs in
  its own venv, made by this script and cached in ~/.cache/edgeinfer/peers-venv; its files are
  then timed here, by the same ONNX Runtime, in the same loop as everything else.

Every variant runs on 2 threads and is timed interleaved in one process (each round in a shuffled
order: whatever always ran right after eager PyTorch paid ~0.3 ms for it at batch 1) at batch 1 x 32 (latency)
and 16 x 128 (throughput) for MiniLM, batch 1 and 8 for ViT, with a bootstrap 95% interval on
each ratio; quality is the mean-pooled sentence embedding's cosine to PyTorch FP32 on the 250
shipped sentences and the agreement of their top-10 nearest neighbours (ViT: the logits' cosine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _report import cpu_tag, minilm_dir, parse_args, write_section  # noqa: E402

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


THREADS = 2


@dataclass
class Variant:
    """One way to run the model: `run(feeds)` gives its first output, `timer(feeds)` the cheapest
    call that runs those feeds, for timing."""

    run: Callable[[dict[str, Any]], Any]
    timer: Callable[[dict[str, Any]], Callable[[], object]]


def ort_variant(path: Path) -> Variant:
    from edgeinfer.runtime.ort import OrtRunner

    runner = OrtRunner(path, threads=THREADS, profile_first_run=False)
    names = {i.name for i in runner.inputs}

    def mine(feeds):
        return {k: v for k, v in feeds.items() if k in names}

    return Variant(lambda f: next(iter(runner.run(mine(f)).values())), lambda f: runner.timer(mine(f)))


def openvino_variant(model, config: dict[str, Any] | None = None) -> Variant:
    """OpenVINO as its user calls it: compile_model(model, "CPU"), on this benchmark's threads."""
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": THREADS, **(config or {})})
    names = {port.get_any_name() for port in compiled.inputs}

    def mine(feeds):
        return {k: v for k, v in feeds.items() if k in names}

    def timer(feeds):
        request, mine_feeds = compiled.create_infer_request(), mine(feeds)
        return lambda: request.infer(mine_feeds)

    return Variant(lambda f: compiled(mine(f))[0], timer)


def torch_variant(model, output: str, bf16: bool = False) -> Variant:
    import torch

    def run(feeds):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        return getattr(out, output).float().numpy()

    def timer(feeds):
        tfeeds = {k: torch.from_numpy(v) for k, v in feeds.items()}

        def call():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model(**tfeeds)

        return call

    return Variant(run, timer)


def nncf_openvino_int8(onnx_path: Path, out: Path, calib: list[dict[str, Any]], transformer: bool) -> Path:
    """NNCF's documented post-training INT8 for OpenVINO, on the OpenVINO model of `onnx_path`."""
    import nncf
    import openvino as ov

    xml = out / f"{onnx_path.stem}-nncf-int8.xml"
    if not xml.exists():
        model = ov.Core().read_model(str(onnx_path))
        model_type = nncf.ModelType.TRANSFORMER if transformer else None
        ov.save_model(nncf.quantize(model, nncf.Dataset(calib), model_type=model_type, subset_size=300), str(xml))
    return xml


def optimized_variant(bundle: Path) -> tuple[str, Variant]:
    """The model `optimize` shipped, on the runtime and precision its manifest records."""
    from edgeinfer.pipelines.target import OnnxTarget, onnx_runner

    manifest = json.loads((bundle / "manifest.json").read_text())
    if manifest.get("runtime") == "openvino":
        where = OnnxTarget(None, THREADS, "openvino", manifest["openvino"]["device"], manifest["openvino"]["precision"])
    else:
        where = OnnxTarget(None, THREADS)
    runner = onnx_runner(bundle / manifest["model"], where, profile_first_run=False)
    names = {i.name for i in runner.inputs}

    def mine(feeds):
        return {k: v for k, v in feeds.items() if k in names}

    label = f"edgeinfer optimize --device host: {manifest['candidate']} ({runner.report.used[0]})"
    return label, Variant(lambda f: next(iter(runner.run(mine(f)).values())), lambda f: runner.timer(mine(f)))


def run_optimize(source: Path, data: Path, bundle: Path) -> Path:
    """`edgeinfer optimize SOURCE --device host --max-drop 0.01`, as a user runs it."""
    cli("optimize", str(source), "--device", "host", "--data", str(data), "--max-drop", "0.01", "-o", str(bundle))
    return bundle


PEERS = ("OpenVINO", "PyTorch BF16", "Optimum O2 + VNNI")


def fastest_peer(times: dict[str, list[float]]) -> str:
    import numpy as np

    peers = [n for n in times if n.startswith(PEERS)]
    return min(peers, key=lambda n: float(np.median(times[n])))


def rows_for(shape: str, times, quality_of, cols_quality) -> tuple[list[list[str]], dict[str, Any]]:
    import numpy as np

    from edgeinfer.core.measure import speedup_ci

    best_peer = fastest_peer(times)
    rows, summary = [], {}
    for name, t in times.items():
        p50 = float(np.median(t)) * 1e3
        vs_peer, lo, hi = speedup_ci(times[best_peer], t)
        vs_eager, elo, ehi = speedup_ci(times["PyTorch eager FP32"], t)
        rows.append(
            [
                shape,
                name,
                f"{p50:.2f} ms",
                f"{vs_peer:.2f}x ({lo:.2f}-{hi:.2f})",
                f"{vs_eager:.2f}x ({elo:.2f}-{ehi:.2f})",
            ]
            + [f"{q:.4f}" if isinstance(q, float) else str(q) for q in cols_quality(quality_of.get(name))]
        )
        summary[f"{shape} {name}"] = {"p50_ms": p50, "vs_fastest_peer": vs_peer, "vs_eager": vs_eager}
    summary[f"{shape} fastest peer"] = best_peer
    return rows, summary


def minilm_variants(src: Path, out: Path, tokenizer, model) -> dict[str, Variant]:
    from edgeinfer.examples import SENTENCES

    fp32, int8 = out / "minilm.onnx", out / "minilm-int8.onnx"
    cli("export", str(src), "-o", str(fp32))
    cli("quantize", str(fp32), "-o", str(int8), "--method", "dynamic")
    label, optimized = optimized_variant(run_optimize(fp32, SENTENCES, out / "minilm-host-bundle"))
    sentences = [s for s in SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]
    calib = []
    for i in range(0, len(sentences), 8):
        enc = tokenizer(
            sentences[i : i + 8], padding="max_length", max_length=128, truncation=True, return_tensors="np"
        )
        calib.append({k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    optimum = optimum_files(src, out / "optimum-minilm")
    return the_variants(model, "last_hidden_state", (label, optimized), fp32, int8, calib, optimum, out)


def the_variants(model, output: str, shipped: tuple[str, Variant], fp32: Path, int8: Path, calib, optimum, out: Path):
    """Every variant of one model: eager PyTorch (FP32, and BF16 autocast where the CPU has it),
    what optimize shipped, the README's ONNX Runtime path, OpenVINO's default and NNCF INT8, Optimum's INT8."""
    variants = {
        "PyTorch eager FP32": torch_variant(model, output),
        shipped[0]: shipped[1],
        "edgeinfer export + quantize --method dynamic (ONNX Runtime)": ort_variant(int8),
        "edgeinfer export, FP32 (ONNX Runtime)": ort_variant(fp32),
        "OpenVINO default compile of the export": openvino_variant(str(fp32)),
        "OpenVINO + NNCF INT8 (its documented recipe)": openvino_variant(
            str(nncf_openvino_int8(fp32, out, calib, transformer=True))
        ),
        "Optimum O2 + VNNI dynamic INT8": ort_variant(optimum["Optimum O2 + VNNI dynamic INT8"]),
    }
    from edgeinfer.devices import host_has_bf16

    if host_has_bf16():
        variants["PyTorch BF16 autocast"] = torch_variant(model, output, bf16=True)
    return variants


def quality(variants: dict[str, Variant], tokenizer) -> dict[str, tuple[float, float]]:
    """Mean cosine of mean-pooled sentence embeddings to PyTorch FP32, and top-10 neighbour agreement."""
    import numpy as np

    from edgeinfer.examples import SENTENCES

    sentences = [s for s in SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]
    enc = tokenizer(sentences, padding=True, return_tensors="np")
    feeds = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    mask = enc["attention_mask"][..., None].astype(np.float32)

    def pool(hidden) -> np.ndarray:
        v = (np.asarray(hidden, dtype=np.float32) * mask).sum(1) / mask.sum(1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    ref = pool(variants["PyTorch eager FP32"].run(feeds))
    top_ref = np.argsort(-(ref @ ref.T), axis=1)[:, 1:11]
    out = {}
    for name, variant in variants.items():
        emb = pool(variant.run(feeds))
        top = np.argsort(-(emb @ emb.T), axis=1)[:, 1:11]
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, top_ref)])
        out[name] = (float((emb * ref).sum(1).mean()), float(overlap))
    return out


def main() -> None:
    from edgeinfer.core.measure import apply_measurement_env

    # OpenMP's wait policy as the CLI sets it, before torch loads: otherwise PyTorch's idle threads
    # spin after each call and slow whichever variant runs next in the interleaved loop.
    apply_measurement_env()
    import numpy as np
    import torch
    import transformers

    from edgeinfer.core.measure import interleaved

    args = parse_args(__doc__)
    torch.set_num_threads(THREADS)
    if True:  # MiniLM
        src = minilm_dir()
        model = transformers.AutoModel.from_pretrained(str(src)).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(src))
        variants = minilm_variants(src, args.out, tokenizer, model)
        quality_of = quality(variants, tokenizer)
        rows, summary = [], {}
        for batch, seq, runs in ((1, 32, args.runs * 5), (16, 128, args.runs)):
            ids = np.random.default_rng(0).integers(1000, 29000, (batch, seq))
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            times = interleaved({n: v.timer(feeds) for n, v in variants.items()}, runs=runs, warmup=3, shuffle=True)
            more, facts = rows_for(f"b{batch} x {seq}", times, quality_of, lambda q: q or ("-", "-"))
            rows += more
            summary.update(facts)
        for r in rows:
            print(" | ".join(r), flush=True)
        write_section(
            f"Transformers against OpenVINO, PyTorch BF16 and Optimum ({cpu_tag()})",
            f"python benchmarks/peers.py --runs {args.runs}",
            ["shape", "variant", "p50", "vs fastest peer (95% CI)", "vs eager PyTorch FP32", "cosine", "top-10"],
            rows,
            "all-MiniLM-L6-v2, real weights, 2 threads everywhere, timed interleaved in one process, each round in a "
            "shuffled order; ratios > 1 mean "
            "faster. Peers: OpenVINO's default compile and NNCF INT8, PyTorch BF16 autocast (where the CPU has BF16), "
            "Optimum's O2 + VNNI INT8 (its documented recipe, made in its own venv, run by the same ONNX Runtime). "
            "edgeinfer's row is what `optimize --device host --max-drop 0.01` shipped, on the runtime its bundle "
            "names. Quality: mean cosine of mean-pooled embeddings to PyTorch FP32 on the 250 shipped sentences, and "
            "top-10 neighbour agreement; the INT8 variants calibrate on those same sentences (optimize measures its "
            "drop on them too).",
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
    from edgeinfer.core.measure import apply_measurement_env

    apply_measurement_env()
    import numpy as np
    import torch
    import transformers

    from edgeinfer.core.measure import interleaved

    torch.set_num_threads(THREADS)
    src, out = vit_folder(args.out), args.out
    rng = np.random.default_rng(0)
    images = rng.standard_normal((16, 3, 224, 224)).astype(np.float32)
    data = out / "vit-images.npz"
    np.savez(data, pixel_values=images)
    fp32, int8 = out / "vit.onnx", out / "vit-int8.onnx"
    cli("export", str(src), "-o", str(fp32))
    cli("quantize", str(fp32), "-o", str(int8), "--method", "dynamic")
    label, optimized = optimized_variant(run_optimize(fp32, data, out / "vit-host-bundle"))
    model = transformers.ViTForImageClassification.from_pretrained(str(src)).eval()
    calib = [{"pixel_values": images[i : i + 1]} for i in range(len(images))]
    optimum = optimum_files(src, out / "optimum-vit", "ORTModelForImageClassification")
    variants = the_variants(model, "logits", (label, optimized), fp32, int8, calib, optimum, out)
    rows = []
    for batch, runs in ((1, args.runs * 2), (8, max(args.runs // 2, 5))):
        feeds = {"pixel_values": images[:batch]}
        ref = np.asarray(variants["PyTorch eager FP32"].run(feeds), dtype=np.float64)
        cosine = {}
        for name, v in variants.items():
            got = np.asarray(v.run(feeds), dtype=np.float64)
            cosine[name] = (
                float(np.mean(np.sum(got * ref, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1))),
            )
        times = interleaved({n: v.timer(feeds) for n, v in variants.items()}, runs=runs, warmup=2, shuffle=True)
        more, _ = rows_for(f"b{batch} x 3x224x224", times, cosine, lambda q: q or ("-",))
        rows += more
    for r in rows:
        print(" | ".join(r), flush=True)
    write_section(
        f"ViT-Small against OpenVINO, PyTorch BF16 and Optimum ({cpu_tag()})",
        f"python benchmarks/peers.py --runs {args.runs}",
        ["shape", "variant", "p50", "vs fastest peer (95% CI)", "vs eager PyTorch FP32", "logit cosine"],
        rows,
        "ViT-Small's shape with seeded random weights (no real weights offline; speed does not depend on them), "
        "random images (the 16 that optimize and NNCF calibrate on; the timed batch is among them). 2 threads "
        "everywhere, timed interleaved in one process, each round in a shuffled order. Quality: mean cosine of the logits to PyTorch FP32's.",
    )


if __name__ == "__main__":
    # --models=minilm,vit (the default: both) runs one section alone.
    chosen = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--models=")), "minilm,vit").split(",")
    if "minilm" in chosen:
        main()
    if "vit" in chosen:
        vit_section(parse_args(__doc__))
