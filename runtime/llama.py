"""llama.cpp runner for GGUF LLMs: streaming generation, chat templates, pp/tg benchmarks, log-probs.

It reports what really ran: llama.cpp's backend, the layers offloaded, the threads. Asking for GPU
layers on a build without GPU offload is an error, or an explicit, recorded fallback.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.errors import (
    ConfigError,
    InputError,
    MissingDependencyError,
    ProviderUnavailableError,
    option,
)
from edgeinfer.core.formats import gguf_int, gguf_string, open_gguf
from edgeinfer.core.gguf_types import KvType
from edgeinfer.core.limits import check_fits_in_memory, check_threads
from edgeinfer.core.model_kind import ModelKind
from edgeinfer.runtime import Backend, GenerationStats, ProviderReport, Target, register_backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LlamaSettings:
    n_ctx: int = 2048
    threads: int | None = None
    n_gpu_layers: int = 0
    allow_fallback: bool = False
    seed: int = 0
    # llama.cpp's extra CPU weight buffers ("repack": weights rearranged at load into the blocks its
    # AVX2 / AVX-512 / AMX kernels read fastest); None: off on AMX CPUs, where this llama.cpp crashes
    # with them (see use_extra_buffers), on elsewhere.
    extra_buffers: bool | None = None
    # The KV cache's element type: f16 (llama.cpp's default), q8_0 or q4_0 (less memory, some
    # quality; a quantized V cache needs flash attention, which is then switched on).
    kv_type: KvType = KvType.F16


# GGML type ids and bytes per element of the KV-cache types offered.
KV_TYPES = {KvType.F16: (1, 2.0), KvType.Q8_0: (8, 34 / 32), KvType.Q4_0: (2, 18 / 32)}


def check_chat_format(name: str) -> str:
    """`name` if it is one of llama-cpp-python's built-in chat formats, else one line listing them."""
    from llama_cpp import llama_chat_format

    known = sorted(llama_chat_format.LlamaChatCompletionHandlerRegistry()._chat_handlers)
    if name not in known:
        raise InputError(f"chat format {name!r} is not one llama-cpp-python knows; pick one of {', '.join(known)}")
    return name


def no_chat_template(path: Path) -> str:
    """What chat says to a GGUF without a chat template (serve answers its chat route with it)."""
    return (
        f"{path.name} carries no chat template (tokenizer.chat_template): a base model, or one converted "
        f"without it. Give {option('chat_format', 'NAME')} (gemma, chatml, llama-3, ...) for the format it "
        "was trained on, or use completions (`edgeinfer run MODEL --prompt TEXT`)"
    )


def cpu_has_amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def generation_threads(settings: LlamaSettings) -> int:
    """Threads for generation: the settings', else the physical cores, as llama.cpp itself chooses.
    llama-cpp-python's own default is half the logical CPUs, which assumes two per core; on a
    2-core machine without SMT it left a core idle (SmolLM2 Q8_0: 2 threads ~1.2x of 1)."""
    import os

    import psutil

    return settings.threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1


def gpu_offload_build() -> bool:
    """Whether this llama-cpp-python was built with a GPU backend (CUDA, Metal, Vulkan, ...)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def use_extra_buffers(settings: LlamaSettings) -> bool:
    """Whether llama.cpp may put weights in its extra CPU buffers (AMX tiles, repacked blocks).

    On AMX CPUs the CPU-only llama.cpp that pip builds segfaults in decode with them (every quantized
    model, on an Intel Xeon with AMX-INT8; not reproducible on the AVX-512 AMD hosts without AMX). An
    open upstream fix names a cause that fits: worker threads running AMX tile instructions without
    the per-thread XTILEDATA permission Linux requires, and a tile config the compiler drops
    (ggml-org/llama.cpp#26954; the crash itself is #20824). So they are off there.

    Not on a GPU build: on an H200 host (Xeon with AMX) the CUDA build of the same llama-cpp-python
    ran with them, on the GPU and on the CPU alike, and segfaulted in llama_model_load_from_file on
    every load made with them off (../shared/notes/gpu-check.md): the one load setting all those
    crashed loads shared and the working direct loads did not. So they stay at llama.cpp's default
    (on) wherever the build offloads, and elsewhere on non-AMX CPUs, unless the settings say otherwise.
    `benchmarks/llm_repack.py` measures what repacking gains and reproduces the AMX crash;
    `benchmarks/gpu_check.sh` checks a GPU host, load setting by load setting."""
    if settings.extra_buffers is not None:
        return settings.extra_buffers
    return gpu_offload_build() or not cpu_has_amx()


@contextlib.contextmanager
def model_params(use_extra_bufts: bool):
    """llama_cpp.Llama takes no `use_extra_bufts` argument; set it on the defaults it starts from."""
    import llama_cpp

    module = llama_cpp.llama_cpp
    original = module.llama_model_default_params
    if original().use_extra_bufts == use_extra_bufts:  # llama.cpp's own default: load exactly as it would
        yield
        return

    def params():
        p = original()
        p.use_extra_bufts = use_extra_bufts
        return p

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = original


# ggml_log_level in the llama.cpp llama-cpp-python 0.3 bundles: NONE, DEBUG, INFO, WARN, ERROR, CONT;
# older builds had no DEBUG, so ERROR was 3. Warnings and errors either way; _llama_error picks.
_GGML_LOG_WARN_OR_ERROR = (3, 4)
# "load_tensors:   CPU_REPACK model buffer size =    60.00 MiB": where the loader put the weights.
_WEIGHT_BUFFER = re.compile(r"(\S+) model buffer size =\s*([0-9.]+) MiB")


# Lines llama.cpp logs at error level that are not errors: shown only at -v. A sliding-window model
# (Gemma 2 / 3) is given a full-size window cache, which llama.cpp announces on every context.
_LLAMA_NOTICES = ("using full-size SWA cache",)


@contextlib.contextmanager
def _llama_log() -> Iterator[list[str]]:
    """The error lines llama.cpp logs while loading ('llama_model_load: error loading model: ...'),
    and its weight-buffer lines ('CPU_REPACK model buffer size = ...').

    llama-cpp-python sends llama.cpp's log to Python's stderr, which it points at /dev/null while
    loading when not verbose; a log callback sees the lines before that. The library's own
    callback still gets every line, and is put back afterwards."""
    import ctypes

    import llama_cpp
    from llama_cpp import _logger

    lines: list[str] = []

    verbose = logging.getLogger("edgeinfer").isEnabledFor(logging.DEBUG)

    @llama_cpp.llama_log_callback
    def record(level: int, text: bytes, user_data) -> None:
        line = text.decode("utf-8", "replace")
        if level in _GGML_LOG_WARN_OR_ERROR or "model buffer size" in line:
            lines.append(line.strip())
        if verbose or not any(notice in line for notice in _LLAMA_NOTICES):
            _logger.llama_log_callback(level, text, user_data)

    llama_cpp.llama_log_set(record, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def weight_buffers(lines: list[str]) -> dict[str, float]:
    """MiB of weights per llama.cpp buffer type (CPU_Mapped, CPU_REPACK, AMX, CUDA0, ...) from its load log."""
    buffers: dict[str, float] = {}
    for line in lines:
        m = _WEIGHT_BUFFER.search(line)
        if m:
            buffers[m.group(1)] = buffers.get(m.group(1), 0.0) + float(m.group(2))
    return buffers


def _llama_error(lines: list[str]) -> str:
    """The most telling of llama.cpp's error lines: the loader's reason, without its function prefix."""
    for line in lines:
        if "error loading model:" in line:
            return line.split("error loading model:", 1)[1].strip()[:300]
    said = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    return said[0][:300] if said else ""


def kv_cache_bytes(reader, n_ctx: int, kv_type: str = "f16") -> int | None:
    """Bytes of llama.cpp's KV cache for `n_ctx` tokens, from the GGUF header (None if unknown)."""
    arch = gguf_string(reader, "general.architecture")
    layers = gguf_int(reader, f"{arch}.block_count")
    embd = gguf_int(reader, f"{arch}.embedding_length")
    heads = gguf_int(reader, f"{arch}.attention.head_count")
    kv_heads = gguf_int(reader, f"{arch}.attention.head_count_kv") or heads
    if not (layers and embd and heads and kv_heads):
        return None
    return int(2 * KV_TYPES[KvType(kv_type)][1] * n_ctx * layers * embd * kv_heads // heads)


def memory_estimate(path: Path, n_ctx: int, kv_type: str = "f16", n_batch: int = 512) -> dict[str, int]:
    """What loading `path` at a context of `n_ctx` allocates, in bytes, read off the GGUF header
    before anything loads: the weights (mapped, and all touched by one evaluation), the KV cache,
    llama.cpp's compute buffer (its output logits for a batch, and the batch's activations) and
    llama-cpp-python's own copy of a batch of logits. The Python runtime is not included."""
    if kv_type not in KV_TYPES:
        raise ConfigError(f"KV-cache type {kv_type!r}: choose {', '.join(KV_TYPES)}")
    reader = open_gguf(path)
    arch = gguf_string(reader, "general.architecture")
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data) if "tokenizer.ggml.tokens" in reader.fields else 0
    embd = gguf_int(reader, f"{arch}.embedding_length") or 0
    ff = gguf_int(reader, f"{arch}.feed_forward_length") or 4 * embd
    batch = min(n_batch, n_ctx)
    logits = batch * vocab * 4
    return {
        "weights": sum(int(t.n_bytes) for t in reader.tensors),
        "kv_cache": kv_cache_bytes(reader, n_ctx, kv_type) or 0,
        "compute": logits + batch * (4 * embd + 3 * ff) * 4,
        "python_logits": logits,
        "header": int(reader.data_offset),  # the vocabulary and metadata, parsed into memory
    }


def _check_kv_fits(reader, n_ctx: int, name: str, kv_type: str = "f16") -> None:
    """Refuse a context whose KV cache cannot fit in this machine's free memory, before allocating it."""
    need = kv_cache_bytes(reader, n_ctx, kv_type)
    if need is not None:
        check_fits_in_memory(
            need,
            f"the KV cache of {name} for a context of {n_ctx:,} tokens",
            f"Use a smaller context ({option('n_ctx')}, {option('n_prompt')}).",
        )


def check_llm_file(path: Path, n_ctx: int, kv_type: str = "f16") -> None:
    """Everything knowable before llama.cpp loads `path`: a whole, sane GGUF (llama.cpp trusts the
    header's sizes; it only ever sees a file this accepted) holding a language model with a
    vocabulary, and a context whose KV cache fits in free memory."""
    if not path.is_file():
        raise InputError(f"model {path} does not exist")
    if path.suffix.lower() == ".onnx":
        raise InputError(f"{path.name} is an ONNX model; the llama.cpp runtime takes a .gguf LLM")
    reader = open_gguf(path)
    if not 16 <= n_ctx <= 1 << 20:
        raise ConfigError(f"context size {n_ctx} is outside 16 ... 1048576 tokens")
    arch = gguf_string(reader, "general.architecture")
    if not arch or "tokenizer.ggml.tokens" not in reader.fields:
        what = f"a {arch} model" if arch else "a GGUF without an architecture"
        raise InputError(
            f"{path.name} is {what} without a tokenizer vocabulary: not a language model llama.cpp can run"
        )
    if kv_type not in KV_TYPES:
        raise ConfigError(f"KV-cache type {kv_type!r}: choose {', '.join(KV_TYPES)}")
    _check_kv_fits(reader, n_ctx, path.name, kv_type)


def kv_params(kv_type: str) -> dict[str, Any]:
    """llama_cpp.Llama keyword arguments for a KV-cache type (none for the default f16)."""
    if kv_type == "f16":
        return {}
    ggml_type = KV_TYPES[KvType(kv_type)][0]
    return {"type_k": ggml_type, "type_v": ggml_type, "flash_attn": True}


def offloaded_layers(settings: LlamaSettings) -> tuple[int, list[str]]:
    """The GPU layers this llama.cpp build can really take for `settings`, and the fallbacks taken:
    GPU layers on a build without offload are refused, or with allow_fallback said, recorded and
    run on the CPU; never silently ignored as llama.cpp itself would."""
    if not settings.n_gpu_layers or gpu_offload_build():
        return settings.n_gpu_layers, []
    if not settings.allow_fallback:
        raise ProviderUnavailableError(
            f"{settings.n_gpu_layers} GPU layers requested, but this llama-cpp-python build has no GPU offload "
            "(reinstall it with CMAKE_ARGS=-DGGML_CUDA=on or -DGGML_METAL=on), or pass "
            + option("allow_fallback", True)
        )
    log.warning("fallback: no GPU offload in this llama.cpp build; running all layers on the CPU")
    return 0, ["gpu offload unavailable"]


class LlamaRunner:
    def __init__(
        self,
        path: Path,
        settings: LlamaSettings = LlamaSettings(),
        logits_all: bool = False,
    ) -> None:
        self.path = Path(path)
        check_threads(settings.threads)
        check_llm_file(self.path, settings.n_ctx, settings.kv_type)  # before llama.cpp loads: a quick refusal
        try:
            import llama_cpp
        except ImportError as e:
            raise MissingDependencyError("llama-cpp-python", "running GGUF models") from e
        gpu_layers, fallbacks = offloaded_layers(settings)
        self.settings = settings
        self.logits_all = logits_all
        extra_bufts = use_extra_buffers(settings)
        if not extra_bufts and gpu_offload_build():  # asked for (--no-repack, a profile's repack = false)
            log.warning(
                "loading with llama.cpp's extra weight buffers off (--no-repack) on a build with GPU offload: "
                "a CUDA build crashed (SIGSEGV) on every such load on an Intel AMX host; if this one does, "
                "drop --no-repack"
            )
        with _llama_log() as llama_log, model_params(extra_bufts):
            try:
                self.llm = llama_cpp.Llama(
                    model_path=str(self.path),
                    n_ctx=settings.n_ctx,
                    n_threads=generation_threads(settings),
                    n_threads_batch=settings.threads,
                    n_gpu_layers=gpu_layers,
                    logits_all=logits_all,
                    seed=settings.seed,
                    verbose=False,
                    **kv_params(settings.kv_type),
                )
            except (ValueError, RuntimeError) as e:
                said = _llama_error(llama_log)
                raise InputError(f"llama.cpp could not load {self.path.name}: {said or e}") from None
        # Where the weights went says which kernels run: CPU_REPACK / AMX buffers take llama.cpp's
        # repacked-block kernels, CPU / CPU_Mapped its plain ones, CUDA0 / Metal the GPU's.
        self.weight_buffers = weight_buffers(llama_log)
        backend = "llama.cpp GPU" if gpu_layers else "llama.cpp CPU"
        if not extra_bufts:
            backend += " (no AMX/repacked weight buffers)"
        if self.weight_buffers:
            backend += " [weights: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in self.weight_buffers.items()) + "]"
        # llama.cpp has no per-node placement to report; what ran is the backend and its offload.
        self.report = ProviderReport(
            requested=[f"llama.cpp n_gpu_layers={settings.n_gpu_layers}"], used=[backend], fallbacks=fallbacks
        )

    def close(self) -> None:
        """Free llama.cpp's model, context and buffers now rather than when collected."""
        self.llm.close()

    # -- tokens ---------------------------------------------------------------------------

    @property
    def chat_template(self) -> str | None:
        """The model's own chat template (tokenizer.chat_template), if its GGUF carries one."""
        return self.llm.metadata.get("tokenizer.chat_template") or None

    def use_chat_format(self, name: str) -> None:
        """Format chats with one of llama-cpp-python's built-in formats instead of the GGUF's template."""
        self.llm.chat_format = check_chat_format(name)
        self.llm.chat_handler = None

    def tokenize(self, text: str, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids; `special=True` parses control tokens such as <|im_start|> as Hugging Face does."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def _check_fits(self, n_prompt: int, max_tokens: int) -> None:
        if n_prompt + max_tokens > self.llm.n_ctx():
            raise InputError(
                f"prompt of {n_prompt} tokens + {max_tokens} to generate exceeds the context of "
                f"{self.llm.n_ctx()} tokens; shorten the prompt or raise {option('n_ctx')}"
            )

    # -- generation -----------------------------------------------------------------------

    def stream(
        self,
        prompt: str | None = None,
        messages: list[dict] | None = None,
        max_tokens: int = 128,
        temperature: float = 0.0,
    ) -> Iterator[str | GenerationStats]:
        """Yield text pieces as they are generated, then the GenerationStats."""
        stats = GenerationStats()
        if messages is not None:
            source: Any = self.llm.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]  # plain role/content dicts
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
            )
            prompt_text = None
        else:
            if prompt is None:
                raise ValueError("stream() needs a prompt or messages")
            stats.prompt_tokens = len(self.tokenize(prompt))
            self._check_fits(stats.prompt_tokens, max_tokens)
            source = self.llm.create_completion(prompt, max_tokens=max_tokens, temperature=temperature, stream=True)
            prompt_text = prompt
        start = time.perf_counter()
        first = None
        pieces = []
        try:
            for chunk in source:
                now = time.perf_counter()
                choice = chunk["choices"][0]
                piece = choice.get("text") if prompt_text is not None else choice.get("delta", {}).get("content")
                if first is None:
                    first = now  # prompt processing ends when the first token arrives
                stats.generated_tokens += 1
                if piece:
                    pieces.append(piece)
                    yield piece
        except ValueError as e:
            raise InputError(str(e)) from e
        end = time.perf_counter()
        if messages is not None:
            stats.prompt_tokens = max(self.llm.n_tokens - stats.generated_tokens, 0)
        stats.prompt_seconds = (first or end) - start
        # The first token came with the prompt pass; the rest are pure generation.
        stats.generate_seconds = end - (first or end)
        stats.generated_tokens = max(stats.generated_tokens - 1, 0)
        stats.text = "".join(pieces)
        stats.report = {"used": self.report.used, "fallbacks": self.report.fallbacks}
        yield stats

    def _reset(self) -> None:
        """Forget the evaluated tokens and clear the KV cache, so each measurement starts cold."""
        import llama_cpp

        self.llm.reset()
        memory = llama_cpp.llama_get_memory(self.llm.ctx)
        if memory is not None:
            llama_cpp.llama_memory_clear(memory, True)

    NOISY_SPREAD = 0.2

    def bench(self, n_prompt: int = 512, n_gen: int = 128, reps: int = 3) -> dict:
        """Prompt processing (pp) and generation (tg) tokens per second, like llama-bench's pp512/tg128."""
        self._check_fits(n_prompt, n_gen)
        rng = np.random.default_rng(0)
        vocab = self.llm.n_vocab()
        pp, tg = [], []
        for _ in range(reps):
            tokens = [int(t) for t in rng.integers(100, vocab - 100, size=n_prompt)]
            self._reset()
            start = time.perf_counter()
            self.llm.eval(tokens)
            pp.append(n_prompt / (time.perf_counter() - start))
            self._reset()
            token = [int(rng.integers(100, vocab - 100))]
            start = time.perf_counter()
            for _ in range(n_gen):
                self.llm.eval(token)
            tg.append(n_gen / (time.perf_counter() - start))
        return {
            "pp_tokens_per_s": float(np.median(pp)),
            "tg_tokens_per_s": float(np.median(tg)),
            "pp_runs": pp,
            "tg_runs": tg,
            # max / min - 1 of the repetitions: above NOISY_SPREAD, the machine was busy and the
            # median is a guess (three runs of one model gave 10.7, 9.3 and 18.8 tok/s).
            "pp_spread": float(max(pp) / min(pp) - 1),
            "tg_spread": float(max(tg) / min(tg) - 1),
            "n_prompt": n_prompt,
            "n_gen": n_gen,
            "reps": reps,
        }

    def sequence_log_probs(self, tokens: list[int]) -> np.ndarray:
        """Log-softmax over the vocabulary at every position of one sequence [len(tokens), vocab]."""
        if not self.logits_all:
            raise ValueError("sequence_log_probs needs a runner made with logits_all=True")
        if len(tokens) > self.llm.n_ctx():
            raise InputError(f"{len(tokens)} tokens exceed the context of {self.llm.n_ctx()} tokens")
        self._reset()
        self.llm.eval(tokens)
        return _log_softmax(np.asarray(self.llm.scores[: len(tokens)], dtype=np.float32))

    def log_probs(self, tokens: list[int], window: int) -> tuple[np.ndarray, np.ndarray]:
        """Log-softmax over the vocabulary for the second half of each `window`-token chunk.

        Returns (log_probs [n_scored, vocab] float32, targets [n_scored]) as llama-perplexity
        scores: each chunk starts fresh, and its first half only provides context.
        """
        if window > self.llm.n_ctx():
            raise InputError(f"window {window} exceeds the context of {self.llm.n_ctx()} tokens")
        outs, targets = [], []
        for start in range(0, len(tokens) - window + 1, window):
            chunk = tokens[start : start + window]
            self._reset()
            self.llm.eval(chunk)
            logits = np.asarray(self.llm.scores[:window], dtype=np.float32)
            half = window // 2
            outs.append(_log_softmax(logits[half - 1 : window - 1]))
            targets.append(np.asarray(chunk[half:window]))
        if not outs:
            raise InputError(f"the text has {len(tokens)} tokens, fewer than one window of {window}")
        return np.concatenate(outs), np.concatenate(targets)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def bytes_per_token(path: Path) -> int:
    """Weight bytes one generated token reads: every tensor, except the token-embedding table when a
    separate output matrix exists (generation then gathers one row of it, not the whole table)."""
    reader = open_gguf(path)
    names = {t.name for t in reader.tensors}
    skip = "token_embd.weight" if "output.weight" in names else None
    return sum(int(t.n_bytes) for t in reader.tensors if t.name != skip)


def gguf_summary(path: Path) -> dict:
    """File type, parameter count and bits per weight, read from the checked GGUF header."""
    reader = open_gguf(path)
    n_params = sum(int(np.prod(t.shape)) for t in reader.tensors)
    n_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    arch = gguf_string(reader, "general.architecture") or "?"
    ctx = gguf_int(reader, f"{arch}.context_length")
    types = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return {
        "architecture": arch,
        "parameters": n_params,
        "bits_per_weight": 8 * n_bytes / max(n_params, 1),
        "context_length": ctx,
        "tensor_types": types,
        "file_size_bytes": Path(path).stat().st_size,
    }


def settings_from_target(target: Target) -> LlamaSettings:
    """LlamaSettings for a runtime Target (its unset fields take llama.cpp's defaults here)."""
    defaults = LlamaSettings()
    return LlamaSettings(
        n_ctx=target.n_ctx or defaults.n_ctx,
        threads=target.threads,
        n_gpu_layers=target.gpu_layers or 0,
        allow_fallback=target.allow_fallback,
        extra_buffers=target.repack,
        kv_type=target.kv_type or defaults.kv_type,
    )


def _load(path: Path, target: Target) -> LlamaRunner:
    return LlamaRunner(path, settings_from_target(target), **dict(target.options))


def target_from_settings(settings: LlamaSettings) -> Target:
    """The runtime Target of LlamaSettings (what load() takes; settings_from_target's inverse)."""
    return Target(
        threads=settings.threads, allow_fallback=settings.allow_fallback, n_ctx=settings.n_ctx,
        gpu_layers=settings.n_gpu_layers, kv_type=KvType(settings.kv_type), repack=settings.extra_buffers,
    )  # fmt: skip


register_backend(
    Backend(
        "llama.cpp",
        (ModelKind.GGUF,),
        frozenset({"threads", "allow_fallback", "n_ctx", "gpu_layers", "kv_type", "repack"}),
        _load,
        generates=True,
        options=frozenset({"logits_all"}),
    )
)
