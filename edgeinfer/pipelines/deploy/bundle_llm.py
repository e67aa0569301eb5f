"""Deploy bundles for GGUF LLMs: model.gguf, golden.npz (token ids and the baseline's
log-probabilities on them), manifest.json, recipe.toml, a run.py that needs only
llama-cpp-python, and a README. `verify` scores the model on the golden tokens on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.artifact import copy_with_sidecar
from edgeinfer.pipelines.deploy.bundle import SCHEMA, bundle_dir, check_bundle_output, write_manifest, write_recipe

GOLDEN_TOKENS = 48


def golden_agreement(expected: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """KL mean / p99 and top-1 agreement of the model's log-probs on the golden tokens."""
    from edgeinfer.pipelines.llm_eval import agreement

    return agreement(expected.astype(np.float32), got.astype(np.float32))


def write_llm_bundle(
    bundle: Path,
    model: Path,
    baseline: Path,
    ref: dict[str, Any],
    *,
    recipe: list[tuple[str, dict[str, Any]]],
    source: str,
    text: str,
    target,
    report,
    candidate,
    force: bool = False,
) -> None:
    """Write the bundle folder atomically. The golden tokens are the first of the scored text; the
    expected log-probs are the baseline's, and the tolerance is the chosen model's own distance from
    them on this machine with headroom for another CPU's kernels: a broken runtime lands far outside.
    `target` is the LlamaSettings the device runs with (pipelines.llm.llama_settings of its profile):
    the manifest records its context, GPU layers, repack and threads."""
    from dataclasses import replace

    from edgeinfer import __version__
    from edgeinfer.pipelines.target import gguf_runner

    tokens = [int(t) for t in ref["tokens"][:GOLDEN_TOKENS]]
    n_ctx, threads = target.n_ctx, target.threads
    settings = replace(target, n_ctx=max(64, len(tokens)))
    outputs = []
    for path in (baseline, model):
        runner = gguf_runner(path, settings, logits_all=True)
        outputs.append(runner.sequence_log_probs(tokens)[:-1])
        runner.close()
    expected, got = outputs
    own = golden_agreement(expected, got)
    tolerance = {
        "max_kld": max(2.0 * own["kl_mean"], own["kl_mean"] + 0.02),
        "min_top1": max(own["top1_agreement"] - 0.1, 0.0),
    }
    check_bundle_output(bundle, force)
    with bundle_dir(bundle) as out:
        copy_with_sidecar(model, out / "model.gguf")
        np.savez(
            out / "golden.npz", tokens=np.asarray(tokens, np.int64), expected_log_probs=expected.astype(np.float16)
        )
        recipe_doc = write_recipe(out, source, recipe, model, report, candidate)
        (out / "run.py").write_text(RUN_GGUF_PY)
        (out / "README.md").write_text(_readme(report, candidate, n_ctx))
        write_manifest(
            out,
            {
                "schema": SCHEMA,
                "format": "gguf",
                "model": "model.gguf",
                "golden": "golden.npz",
                "device": report.device,
                "runtime": "llama.cpp",
                "n_ctx": n_ctx,
                "n_gpu_layers": target.n_gpu_layers,
                # llama.cpp's repacked weights: the profile's choice, else None (off on AMX CPUs).
                "repack": target.extra_buffers,
                "threads": threads,
                "budgets": report.to_dict()["budgets"],
                "tolerance": tolerance,
                "measured": recipe_doc["measured"],
                "candidate": candidate.name,
                "scored_text": Path(text).name,
                "edgeinfer_version": __version__,
            },
        )


def _readme(report, candidate, n_ctx: int) -> str:
    m = candidate.metrics
    return f"""# edgeinfer LLM bundle for {report.device}

`model.gguf` is the `{candidate.name}` candidate, chosen by `edgeinfer optimize` (objective:
{report.objective}). Against the baseline on the same tokens it measured a mean KL divergence of
{candidate.drop:.4f}, top-1 agreement {m.get("top1_agreement", float("nan")):.3f}, perplexity
{m.get("perplexity", float("nan")):.2f}; {m.get("tg_tokens_per_s", float("nan")):.1f} generated tokens/s;
{candidate.size_bytes / 2**20:.1f} MiB on disk, a peak of {candidate.memory_mb or float("nan"):.0f} MiB
at a context of {n_ctx} tokens.

On the device:

    edgeinfer verify .                       # checksums, golden log-probs, speed: exit 0 / 1 / 2
    python run.py "Write a haiku about rain"   # needs only llama-cpp-python

`manifest.json` lists every file with its sha256, the context and threads, the budgets and the
tolerances; `recipe.toml` the passes that made the model.
"""


RUN_GGUF_PY = '''"""Generate with this bundle's model (greedy); needs only llama-cpp-python.

    python run.py "your prompt" [--max-tokens 128] [--chat]
"""

import argparse
import json
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

HERE = Path(__file__).resolve().parent


def repack_weights(repack):
    """llama.cpp's repacked CPU weights (AMX tiles, interleaved blocks): the manifest's choice, else off
    on AMX CPUs, where llama.cpp 0.3.x segfaults in decode with them, and on elsewhere."""
    if repack is None:
        try:
            repack = "amx_int8" not in Path("/proc/cpuinfo").read_text()
        except OSError:
            repack = True
    defaults = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        p = defaults()
        p.use_extra_bufts = repack
        return p

    llama_cpp.llama_cpp.llama_model_default_params = params


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--chat", action="store_true", help="apply the model's chat template")
    args = parser.parse_args()
    manifest = json.loads((HERE / "manifest.json").read_text())
    repack_weights(manifest.get("repack"))
    llm = Llama(model_path=str(HERE / manifest["model"]), n_ctx=manifest["n_ctx"], n_threads=manifest["threads"],
                n_gpu_layers=manifest["n_gpu_layers"], verbose=False)
    if args.chat:
        out = llm.create_chat_completion([{"role": "user", "content": args.prompt}], max_tokens=args.max_tokens,
                                         temperature=0.0)
        print(out["choices"][0]["message"]["content"])
    else:
        out = llm(args.prompt, max_tokens=args.max_tokens, temperature=0.0)
        print(args.prompt + out["choices"][0]["text"])


if __name__ == "__main__":
    main()
'''
