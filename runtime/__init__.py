"""Runners: one per backend (ONNX Runtime, llama.cpp, ONNX Runtime GenAI, encoder-decoder folders),
each reporting what really ran the work, behind one entry point: `load(path, target) -> Runner`.

A requested provider that is unavailable is an error, or an explicit, printed and recorded
fallback when the caller allows it; never a silent one. Each backend is one file here that
registers itself (`register_backend`): adding a runtime is that file and its test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from edgeinfer.core.errors import ConfigError, option
from edgeinfer.core.gguf_types import KvType
from edgeinfer.core.model_kind import ModelKind, model_kind
from edgeinfer.core.providers import Provider
from edgeinfer.core.registry import Registry


@dataclass
class ProviderReport:
    """What the runtime actually used, as opposed to what was asked for."""

    requested: list[str]
    used: list[str]
    fallbacks: list[str] = field(default_factory=list)
    # provider -> {"nodes": n, "ops": {op_type: n}}, from ONNX Runtime's profiler.
    placement: dict[str, dict] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.placement:
            return ", ".join(self.used)
        total = sum(p["nodes"] for p in self.placement.values()) or 1
        parts = []
        for ep, p in self.placement.items():
            # A provider that compiles subgraphs (QNN, TensorRT) shows one fused node per partition.
            fused = sum(n for op, n in p["ops"].items() if op.startswith(ep))
            what = f"{fused} compiled partition(s)" if fused == p["nodes"] else f"{p['nodes']} node(s)"
            parts.append(f"{ep.removesuffix('ExecutionProvider')} {what} ({100 * p['nodes'] / total:.0f}%)")
        return ", ".join(parts)


# ---------------------------------------------------------------------------------- one interface


@dataclass
class GenerationStats:
    """The last item of every runner's `stream`: what was generated, how fast, and what ran it."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    generate_seconds: float = 0.0
    text: str = ""
    report: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # a backend's own figures (an encoder-decoder's token ids)

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds else 0.0

    @property
    def generate_tps(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds else 0.0


@dataclass(frozen=True)
class Target:
    """Where and how a model runs, as plain values (pipelines.target builds it from a device profile
    and the user's options). None: the backend's default. A backend reads only the fields it
    `takes`; one given for a backend that does not take it is refused by `load`.

    Args:
        providers: ONNX Runtime execution providers in order of preference; threads: intra-op threads.
        allow_fallback: run on the CPU (said and recorded) when a requested provider or GPU is missing.
        n_ctx, gpu_layers, kv_type, repack: llama.cpp's context, GPU layers, KV-cache type, repacked weights.
        backend: a registered backend by name; None: the one registered for the model's kind.
        options: a backend's own switches as (name, value) pairs, each one it declares
            (onnxruntime: profile_first_run, optimization; llama.cpp: logits_all).
    """

    providers: tuple[Provider, ...] | None = None
    threads: int | None = None
    allow_fallback: bool = False
    n_ctx: int | None = None
    gpu_layers: int | None = None
    kv_type: KvType | None = None
    repack: bool | None = None
    backend: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def given(self) -> set[str]:
        """The fields set to something other than 'the default'."""
        skip = ("backend", "options")
        return {f.name for f in fields(self) if f.name not in skip and getattr(self, f.name) not in (None, False, ())}

    def with_options(self, **options: Any) -> Target:
        """This target with backend switches added (e.g. profile_first_run=False)."""
        from dataclasses import replace

        return replace(self, options=tuple(sorted({**dict(self.options), **options}.items())))


@runtime_checkable
class Runner(Protocol):
    """What `load` returns. Every runner says what really ran (`report`) and is closed after use;
    a tensor model also has `inputs` and `run(feeds) -> outputs`, a text generator `stream(prompt,
    max_tokens)` yielding text pieces and then one GenerationStats, and `bench(n_prompt, n_gen, reps)`."""

    report: Any

    def close(self) -> None: ...


@dataclass(frozen=True)
class Backend:
    """A registered runtime: its name, the model kinds it loads, the Target fields it reads, and
    `load(path, target) -> Runner`. One file in runtime/ registers one (register_backend)."""

    name: str
    kinds: tuple[ModelKind, ...]
    takes: frozenset[str]
    load: Callable[[Path, Target], Runner]
    generates: bool = False  # a text generator (stream / bench) rather than a tensor model (run)
    options: frozenset[str] = frozenset()  # the backend's own switches Target.options may set
    rank: int = 0  # among backends of one kind, the lowest loads it unless Target.backend names another
    # An ASGI app serving the model over the OpenAI HTTP API: serve(path, target, *, model_name,
    # api_key, max_request_bytes, cors_origins) -> app (loads the model). None: not servable.
    # Given here, or by the server's own file through register_server.
    serve: Callable[..., Any] | None = None


_BACKENDS: Registry[Backend] = Registry("runtime backend", __name__, lambda a, b: a.load is b.load)


def register_backend(backend: Backend) -> Backend:
    _BACKENDS.add(backend.name, backend)
    return backend


def register_server(backend: str, serve: Callable[..., Any]) -> None:
    """Give the registered backend named `backend` its HTTP server (Backend.serve), from a file of
    its own that imports the backend's (runtime/llama_server.py for llama.cpp)."""
    from dataclasses import replace

    _BACKENDS.add(backend, replace(_BACKENDS.entry(backend), serve=serve))


def backend_for(kind: ModelKind, name: str | None = None) -> Backend:
    """The backend called `name`, else the first registered for `kind`."""
    known = _BACKENDS.all()
    if name is not None:
        if name not in known:
            raise ConfigError(f"unknown runtime {name!r}; registered: {', '.join(sorted(known))}")
        if kind not in known[name].kinds:
            raise ConfigError(f"the {name} runtime does not load {kind.many}")
        return known[name]
    fits = sorted((b for b in known.values() if kind in b.kinds), key=lambda b: b.rank)
    if not fits:
        raise ConfigError(f"no runtime is registered for {kind.many}")
    return fits[0]


def check_target(kind: ModelKind, target: Target) -> Backend:
    """The backend for `kind`, after refusing Target fields it would ignore (exit 2), each named
    as the option that sets it and with the kinds of model it applies to."""
    backend = backend_for(kind, target.backend)
    unused = sorted(target.given() - backend.takes)
    if unused:
        known = _BACKENDS.all().values()
        takers = {k: None for b in known if unused[0] in b.takes for k in b.kinds}
        names = [option(u) for u in unused]
        verb = "applies" if len(names) == 1 else "apply"
        raise ConfigError(f"{', '.join(names)} {verb} to {' and '.join(k.many for k in takers)}, not to {kind.one}")
    unknown = sorted(set(dict(target.options)) - backend.options)
    if unknown:  # a caller's mistake, not a user's: the names come from code
        raise ConfigError(
            f"the {backend.name} runtime has no option {unknown[0]!r} (it has: {', '.join(sorted(backend.options))})"
        )
    return backend


def load(path: Path | str, target: Target = Target(), *, expect: ModelKind | None = None) -> Runner:
    """Load any model edgeinfer runs (an .onnx file, a .gguf LLM, a GenAI or encoder-decoder folder)
    on the backend for its kind (core.model_kind), or on `target.backend`. With `expect`, a model of
    another kind is refused (a .gguf given where ONNX models are compared)."""
    from edgeinfer.core.errors import InputError

    path = Path(path)
    kind = model_kind(path)
    if expect is not None and kind is not expect:
        raise InputError(f"{path.name} is {kind.one}; this takes {expect.many}")
    return check_target(kind, target).load(path, target)


def serving_app(path: Path | str, target: Target = Target(), **server: Any) -> Any:
    """The HTTP app that serves `path` (loaded now) on its backend, which is checked like `load`'s;
    `server`: the backend's serve options (model_name, api_key, max_request_bytes, cors_origins).
    A model whose backend cannot serve is refused in one line naming what can be served."""
    from edgeinfer.core.errors import InputError

    path = Path(path)
    kind = model_kind(path)
    servable = sorted({k.many for b in _BACKENDS.all().values() if b.serve is not None for k in b.kinds})
    backend = backend_for(kind, target.backend)
    if backend.serve is None:
        raise InputError(f"{path.name} is {kind.one}; serve runs {' and '.join(servable) or 'nothing here'}")
    check_target(kind, target)
    return backend.serve(path, target, **server)
