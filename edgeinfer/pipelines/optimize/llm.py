"""The LLM path of `optimize`: the GGUF types that fit the memory budget, each scored on the same
tokens against the baseline (mean and p99 KL divergence, top-1 agreement, perplexity), its
generation speed measured interleaved with the baseline's, its peak memory in a fresh process.

The baseline is the F16 GGUF exported from a Hugging Face causal LM folder, or the .gguf given
(a quantized one is requantized, with llama.cpp's warning about compounding the error).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.errors import ConfigError
from edgeinfer.core.gguf_types import GgufType
from edgeinfer.core.io import scratch_dir
from edgeinfer.core.progress import Progress
from edgeinfer.pipelines.optimize.search import (
    Candidate,
    Measurement,
    Objective,
    OptimizeReport,
    SearchSettings,
    finish,
    search,
)

log = logging.getLogger(__name__)

# The types worth trying for a laptop or a board, with llama.cpp's nominal bits per weight (a
# model whose rows are not multiples of 256 stores some tensors in another type: the built file's
# real size is what the budgets are checked against).
NOMINAL_BITS = {
    GgufType.F16: 16.0,
    GgufType.Q8_0: 8.5,
    GgufType.Q6_K: 6.56,
    GgufType.Q5_K_M: 5.69,
    GgufType.Q4_K_M: 4.89,
    GgufType.Q4_0: 4.5,
    GgufType.Q3_K_M: 3.91,
}
CANDIDATE_TYPES = (GgufType.Q8_0, GgufType.Q6_K, GgufType.Q5_K_M, GgufType.Q4_K_M, GgufType.Q4_0)
# With a calibration text, these are also tried weighted by its importance matrix (same size,
# lower KL: the low-bit types gain most).
IMPORTANCE_TYPES = (GgufType.Q4_K_M, GgufType.Q4_0, GgufType.Q3_K_M)
# Scoring: window and tokens of the text; timing: prompt and generated tokens per round.
WINDOW, MAX_TOKENS, N_PROMPT, N_GEN = 256, 1024, 64, 32


def candidate_types(profile, baseline_bits: float) -> list[GgufType]:
    """The types below the baseline's bits per weight, and the profile's own `llm.kquant`."""
    types: list[GgufType] = list(CANDIDATE_TYPES)
    if profile is not None and profile.llm.kquant not in types:
        types.append(profile.llm.kquant)
    return [t for t in types if NOMINAL_BITS.get(t, 8.0) < baseline_bits - 0.5]


class GgufSpace:
    """Builds candidates with quantize-gguf and measures each against the baseline's log-probs."""

    def __init__(self, baseline: Path, work: Path, text: Path, profile, ctx, runs: int, progress: Progress) -> None:
        from dataclasses import replace

        from edgeinfer.pipelines.llm import llama_settings
        from edgeinfer.pipelines.llm_eval import baseline_logits
        from edgeinfer.pipelines.target import gguf_runner
        from edgeinfer.runtime.llama import gguf_summary

        self.baseline, self.work, self.profile, self.ctx, self.progress = baseline, work, profile, ctx, progress
        self.text, self.runs = text, runs
        # What the device runs with (its [llm] table: GPU layers, context, KV type, repack; threads):
        # candidates are timed and their memory measured so. A profile asking for GPU layers where
        # this llama.cpp has no GPU is refused here, as `bench --device` refuses it.
        self.target = llama_settings(profile)
        self.threads, self.n_ctx = self.target.threads, self.target.n_ctx
        self.reps = max(3, min(runs, 9))  # generation rounds are long: a few, interleaved
        summary = gguf_summary(baseline)
        self.params, self.bits = summary["parameters"], summary["bits_per_weight"]
        self.base_weight_bytes = self.params * self.bits / 8
        self.base_peak_mb: float | None = None
        self.settings = replace(self.target, n_ctx=max(WINDOW, N_PROMPT + N_GEN))  # scoring and timing
        self.base_runner = gguf_runner(baseline, self.settings)  # first: a target it cannot run is refused at once
        self.ref = baseline_logits(baseline, text, WINDOW, MAX_TOKENS, None, self.threads, progress)

    def remote_spec(self) -> dict[str, Any]:
        return {
            "kind": "gguf", "baseline": self.baseline.read_bytes(), "data": str(self.text), "profile": self.profile,
            "runs": self.runs, "trust_source": self.ctx.trust_source,
        }  # fmt: skip

    def estimate_size_bytes(self, cand: Candidate) -> float | None:
        """The candidate's weights at its type's nominal bits per weight (None: the baseline, or a
        type without a nominal figure). Not the file's size (llama.cpp keeps some tensors, such as
        a large embedding, in other types), but ordered as the files are."""
        if not cand.steps:
            return None
        bits = NOMINAL_BITS.get(GgufType(cand.steps[-1][1]["type"]))
        return None if bits is None else self.params * bits / 8

    def estimate_memory_mb(self, cand: Candidate) -> float | None:
        """The baseline's measured peak with its weights swapped for the candidate's nominal size:
        the KV cache, compute buffers and the process stay; only the weights shrink."""
        from edgeinfer.pipelines.optimize.measurements import gguf_peak_memory_mb

        weights = self.estimate_size_bytes(cand)
        if weights is None:
            return None
        if self.base_peak_mb is None:
            self.progress.stage(f"peak memory of the baseline at a context of {self.n_ctx} tokens (a fresh process)")
            self.base_peak_mb = gguf_peak_memory_mb(self.baseline, self.target)
        return self.base_peak_mb + (weights - self.base_weight_bytes) / 2**20

    def build(self, cand: Candidate) -> Path:
        from edgeinfer.pipelines.passes import run_recipe

        if not cand.steps:
            return self.baseline
        return run_recipe(self.baseline, self.work / f"{cand.name}.gguf", cand.steps, self.ctx).path

    def measure(self, cand: Candidate) -> Measurement:
        from edgeinfer.core.measure import speedup_ci
        from edgeinfer.pipelines.llm_eval import score
        from edgeinfer.pipelines.optimize.measurements import gguf_peak_memory_mb
        from edgeinfer.pipelines.target import gguf_runner

        assert cand.path is not None
        self.progress.stage(f"scoring {cand.name} against the baseline's log-probs")
        tokens = [int(t) for t in self.ref["tokens"]]
        if cand.path == self.baseline:
            figures = score(self.ref["log_probs"].astype(np.float32), self.ref["targets"], self.ref)
        else:
            scorer = gguf_runner(cand.path, self.settings, logits_all=True)
            logp, targets = scorer.log_probs(tokens, int(self.ref["window"]))
            scorer.close()
            figures = score(logp, targets, self.ref)
        self.progress.stage(f"timing {cand.name} against the baseline, interleaved (tg{N_GEN} x {self.reps})")
        runner = gguf_runner(cand.path, self.settings) if cand.path != self.baseline else self.base_runner
        base_s, cand_s, pp = [], [], []
        for i in range(self.reps + 1):  # the first round warms both up and is not counted
            b = self.base_runner.bench(N_PROMPT, N_GEN, 1)
            c = runner.bench(N_PROMPT, N_GEN, 1)
            if i:
                base_s.append(1.0 / b["tg_tokens_per_s"])
                cand_s.append(1.0 / c["tg_tokens_per_s"])
                pp.append(c["pp_tokens_per_s"])
        if runner is not self.base_runner:
            runner.close()
        speedup, lo, hi = speedup_ci(base_s, cand_s)
        metrics = {k: float(figures[k]) for k in ("kl_mean", "kl_p99", "top1_agreement", "perplexity") if k in figures}
        metrics["tg_tokens_per_s"] = float(1.0 / np.median(cand_s))
        metrics["pp_tokens_per_s"] = float(np.median(pp))
        if cand.path == self.baseline and self.base_peak_mb is not None:
            memory = self.base_peak_mb
        else:
            self.progress.stage(f"peak memory of {cand.name} at a context of {self.n_ctx} tokens (a fresh process)")
            memory = gguf_peak_memory_mb(cand.path, self.target)
            if cand.path == self.baseline:
                self.base_peak_mb = memory
        drop = max(float(figures.get("kl_mean", 0.0)), 0.0)
        return Measurement("llm", metrics, drop, float(np.median(cand_s) * 1000.0), speedup, (lo, hi), memory)


def optimize_llm(
    source: str, bundle: Path, *, text: str | None, settings: SearchSettings, calib: str | None = None
) -> OptimizeReport:
    """The LLM search (see optimize.optimize): the baseline GGUF, its candidate types, the bundle.
    With `calib` (a text), IMPORTANCE_TYPES are also tried with its importance matrix."""
    from edgeinfer.core.io import require_file, sha256_file
    from edgeinfer.examples import SENTENCES
    from edgeinfer.pipelines.deploy.bundle_llm import write_llm_bundle
    from edgeinfer.pipelines.optimize.measurements import data_sha256
    from edgeinfer.pipelines.passes import PassContext, run_pass

    profile, objective, progress = settings.profile, settings.objective, settings.progress
    text_path = Path(text) if text else SENTENCES
    require_file(text_path, "text file")
    if text_path.suffix.lower() != ".txt":
        raise ConfigError(f"an LLM is scored on text: give a .txt file, not {text_path.name}")
    if calib is not None:
        calib = str(require_file(Path(calib), "calibration text").resolve())
    replay, replay_steps, export_cfg = settings.replay(source, "export-gguf")
    with scratch_dir("optimize") as tmp:
        work = Path(tmp)
        ctx = PassContext(profile=profile, trust_source=settings.trust_source, compare=False, progress=progress)
        if Path(source).suffix.lower() == ".gguf":
            baseline = require_file(Path(source), "GGUF model")
            export_steps: list[tuple[str, dict[str, Any]]] = []
        else:
            progress.stage(f"exporting {source} to GGUF (the F16 baseline)")
            baseline = run_pass("export-gguf", source, work / "f16.gguf", export_cfg, ctx).path
            export_steps = [("export-gguf", export_cfg)]
        space = GgufSpace(baseline, work, text_path, profile, ctx, settings.runs, progress)
        base_name = "baseline" if export_steps == [] else "f16"
        if replay:
            recipes: list[tuple[str, list]] = [("replay", replay_steps)]
        else:
            types = candidate_types(profile, space.bits)
            if objective is Objective.SIZE:
                types.sort(key=lambda t: NOMINAL_BITS.get(t, 8.0))
            recipes = [(base_name, [])] + [(t.value.lower(), [("quantize-gguf", {"type": t.value})]) for t in types]
            if calib is not None:
                below = [t for t in IMPORTANCE_TYPES if NOMINAL_BITS[t] < space.bits - 0.5]
                recipes += [
                    (f"{t.value.lower()}-imatrix", [("quantize-gguf", {"type": t.value, "calib": calib})])
                    for t in below
                ]
            if objective is Objective.SIZE:
                recipes.append(recipes.pop(0))  # the baseline is the largest
        candidates = [Candidate(name, steps) for name, steps in recipes]
        cache = settings.measurement_cache(
            {
                "input_sha256": sha256_file(baseline),
                "text_sha256": data_sha256(str(text_path)),
                **({"calib_sha256": data_sha256(calib)} if calib else {}),
                "scoring": [WINDOW, MAX_TOKENS, N_PROMPT, N_GEN, space.reps],
                "n_ctx": space.n_ctx,
                "threads": space.threads,
                "n_gpu_layers": space.target.n_gpu_layers,
                "kv_type": space.target.kv_type.value,
                "repack": space.target.extra_buffers,
            }
        )
        search(space, candidates, settings.budgets, objective, cache, progress, settings.executor)
        result = OptimizeReport(settings.device, objective.value, settings.budgets, "llm", candidates, kind="gguf")
        pick = finish(result, space, cache, settings, replay)
        if pick is not None and pick.path is not None:
            progress.stage(f"writing the bundle {bundle.name} ({pick.name})")
            write_llm_bundle(
                bundle, pick.path, baseline, space.ref, recipe=export_steps + pick.steps, source=source,
                text=str(text_path), target=space.target, report=result, candidate=pick,
                force=settings.force,
            )  # fmt: skip
    return result
