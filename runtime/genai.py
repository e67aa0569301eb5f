"""LLMs on ONNX Runtime GenAI: a folder written by its model builder (model.onnx with a KV cache,
genai_config.json, the tokenizer), with the same operations as the llama.cpp runner: tokens,
windowed log-probs for the quality harness, pp/tg timing and streamed generation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.errors import InputError, MissingDependencyError
from edgeinfer.core.model_kind import GENAI_CONFIG as CONFIG
from edgeinfer.core.model_kind import ModelKind
from edgeinfer.runtime import Backend, GenerationStats, ProviderReport, Target, register_backend


def is_genai_folder(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG).is_file()


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def genai_summary(folder: Path) -> dict[str, Any]:
    """Architecture, parameters, bits per weight and weight types of a GenAI folder, from its files."""
    import onnx

    from edgeinfer.core.formats import read_json_object

    folder = Path(folder)
    config = read_json_object(folder / CONFIG, "GenAI config").get("model", {})
    graph = onnx.load(str(folder / config.get("decoder", {}).get("filename", "model.onnx")), load_external_data=False)
    params, types = 0, {}
    for init in graph.graph.initializer:
        n = int(np.prod(init.dims)) if init.dims else 1
        if init.name.endswith(("_scales", "_zero_points")) or "cache" in init.name:
            continue
        packed = init.name.endswith(("_Q4", "_Q8"))
        params += n * (2 if init.name.endswith("_Q4") else 1)
        kind = (
            ("int4" if init.name.endswith("_Q4") else "int8")
            if packed
            else onnx.TensorProto.DataType.Name(init.data_type).lower()
        )
        types[kind] = types.get(kind, 0) + 1
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.startswith("model.onnx"))
    return {
        "architecture": f"onnx-genai {config.get('type', '?')}",
        "parameters": params,
        "bits_per_weight": 8 * size / params if params else 0.0,
        "context_length": config.get("context_length"),
        "tensor_types": types,
        "file_size_bytes": size,
    }


MAX_CONFIG_BYTES = 1 << 20


def check_genai_folder(folder: Path) -> dict[str, Any]:
    """genai_config.json checked as data before the library reads it: a bounded JSON object whose
    file names stay inside the folder, beside a tokenizer.json (the library raises plain
    RuntimeErrors, or worse, for what this refuses in one line)."""
    from edgeinfer.core.formats import read_json_object

    path = folder / CONFIG
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InputError(f"{path} is {path.stat().st_size} bytes; a GenAI config is at most {MAX_CONFIG_BYTES}")
    config = read_json_object(path, "GenAI config", "export the model again")
    model = config.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("decoder"), dict):
        raise InputError(f"{path} has no model.decoder section; export the model again")
    root = folder.resolve()

    def names(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "filename" or k.endswith("_filename"):
                    if not isinstance(v, str):
                        raise InputError(f"{path}: {k} is {v!r}; expected a file name")
                    yield v
                else:
                    yield from names(v)
        elif isinstance(value, list):
            for v in value:
                yield from names(v)

    for name in names(config):
        if not name or Path(name).is_absolute() or not (root / name).resolve().is_relative_to(root):
            raise InputError(f"{path} names {name!r}, a path outside {folder}; refusing it")
        if not (folder / name).is_file():
            raise InputError(f"{path} names {name!r}, which is not in {folder}; export the model again")
    if not (folder / "tokenizer.json").is_file():
        raise InputError(f"{folder} has no tokenizer.json; export the model again (it writes the tokenizer)")
    return config


def sliding_window(config: dict[str, Any]) -> int:
    """The decoder's sliding-window size in a checked genai_config.json (0 without one)."""
    window = config["model"]["decoder"].get("sliding_window") or {}
    size = window.get("window_size", 0) if isinstance(window, dict) else 0
    return size if isinstance(size, int) and 0 <= size <= 1 << 20 else 0


class GenAiRunner:
    """One GenAI model folder on ONNX Runtime (CPU)."""

    def __init__(self, folder: Path) -> None:
        try:
            import onnxruntime_genai
        except ImportError as e:
            raise MissingDependencyError("onnxruntime-genai", "running ONNX Runtime GenAI LLM folders") from e
        self.folder = Path(folder)
        if not is_genai_folder(self.folder):
            raise InputError(f"{self.folder} is not an ONNX Runtime GenAI model folder (no {CONFIG})")
        # A compiled extension without type stubs: its classes are looked up at run time.
        og: Any = onnxruntime_genai
        self.og = og
        checked = check_genai_folder(self.folder)
        try:
            config = og.Config(str(self.folder))
            self.model = og.Model(config)
        except Exception as e:  # the library raises plain Exceptions on bad folders
            raise InputError(
                f"ONNX Runtime GenAI could not load {self.folder}: {str(e).splitlines()[0][:300]}"
            ) from None
        try:
            self.tokenizer = og.Tokenizer(self.model)
        except Exception as e:
            raise InputError(
                f"{self.folder}: the tokenizer cannot be loaded ({str(e).splitlines()[0][:200]})"
            ) from None
        self.report = ProviderReport(["onnxruntime-genai CPU"], ["onnxruntime-genai CPU"])
        # A sliding-window model (Gemma 2 / 3) needs a cache at least one window long, whatever
        # the sequence: GroupQueryAttention refuses a shorter one.
        self.min_cache = sliding_window(checked)

    def tokenize(self, text: str) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(text)]

    def _generator(self, max_length: int):
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=max(max_length, self.min_cache), do_sample=False)
        return self.og.Generator(self.model, params)

    def sequence_log_probs(self, tokens: list[int]) -> np.ndarray:
        """Log-softmax over the vocabulary at every position of one sequence [len(tokens), vocab]."""
        generator = self._generator(len(tokens) + 1)
        generator.append_tokens(np.asarray(tokens, dtype=np.int32))
        return _log_softmax(np.asarray(generator.get_output("logits"), dtype=np.float32)[0])

    def log_probs(self, tokens: list[int], window: int) -> tuple[np.ndarray, np.ndarray]:
        """Log-softmax for the second half of each `window`-token chunk, each chunk from a fresh
        cache, as the llama.cpp runner (and llama-perplexity) scores."""
        outs, targets = [], []
        for start in range(0, len(tokens) - window + 1, window):
            chunk = tokens[start : start + window]
            generator = self._generator(window + 1)
            generator.append_tokens(np.asarray(chunk, dtype=np.int32))
            logits = np.asarray(generator.get_output("logits"), dtype=np.float32)[0]
            half = window // 2
            outs.append(_log_softmax(logits[half - 1 : window - 1]))
            targets.append(np.asarray(chunk[half:window]))
            del generator
        if not outs:
            raise InputError(f"the text has {len(tokens)} tokens, fewer than one window of {window}")
        return np.concatenate(outs), np.concatenate(targets)

    def bench(self, n_prompt: int = 512, n_gen: int = 128, reps: int = 3) -> dict[str, Any]:
        """Prompt processing and generation tokens per second, measured as the llama.cpp runner does."""
        rng = np.random.default_rng(0)
        pp, tg = [], []
        for _ in range(reps):
            prompt = rng.integers(100, 40000, size=n_prompt).astype(np.int32)
            generator = self._generator(n_prompt + 1)
            start = time.perf_counter()
            generator.append_tokens(prompt)
            pp.append(n_prompt / (time.perf_counter() - start))
            del generator
            generator = self._generator(n_gen + 2)
            generator.append_tokens(prompt[:1])
            start = time.perf_counter()
            for _ in range(n_gen):
                generator.generate_next_token()
            tg.append(n_gen / (time.perf_counter() - start))
            del generator
        return {
            "pp_tokens_per_s": float(np.median(pp)),
            "tg_tokens_per_s": float(np.median(tg)),
            "pp_runs": pp,
            "tg_runs": tg,
        }

    def stream(self, prompt: str, max_tokens: int = 128) -> Iterator[str | GenerationStats]:
        """Greedy completion of `prompt`, piece by piece, then the GenerationStats (the prompt's
        time is counted with the generation's: the library evaluates it inside the first step)."""
        start = time.perf_counter()
        ids = self.tokenize(prompt)
        generator = self._generator(len(ids) + max_tokens)
        generator.append_tokens(np.asarray(ids, dtype=np.int32))
        decoder = self.tokenizer.create_stream()
        pieces: list[str] = []
        for _ in range(max_tokens):
            if generator.is_done():
                break
            generator.generate_next_token()
            pieces.append(decoder.decode(int(generator.get_next_tokens()[0])))
            yield pieces[-1]
        seconds = time.perf_counter() - start
        yield GenerationStats(
            prompt_tokens=len(ids), generated_tokens=len(pieces), generate_seconds=seconds, text="".join(pieces),
            report={"used": self.report.used}, extra={"seconds": seconds},
        )  # fmt: skip

    def close(self) -> None:
        """Free the model now rather than when collected."""
        self.model = None


def _load(path: Path, target: Target) -> GenAiRunner:
    return GenAiRunner(path)


register_backend(Backend("onnxruntime-genai", (ModelKind.GENAI,), frozenset(), _load, generates=True))
