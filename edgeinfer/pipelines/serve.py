"""`edgeinfer serve`: a GGUF LLM behind an OpenAI-compatible HTTP server (runtime/llama_server.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgeinfer.core.errors import ConfigError, option


def check_exposure(host: str, api_key: str | None) -> None:
    """A server reachable from other machines must ask for a key."""
    from edgeinfer.runtime.llama_server import LOOPBACK

    if host not in LOOPBACK and not api_key:
        raise ConfigError(
            f"{option('host', host)} exposes the server beyond this machine: give {option('api_key', 'KEY')} "
            "(clients then send it as a Bearer token), or keep the default 127.0.0.1"
        )


def serve(
    model: Path,
    settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    model_name: str | None = None,
    max_request_mb: float = 1.0,
    announce: Callable[[str], None] = print,
) -> None:
    """Load `model` and serve it until interrupted (Ctrl-C stops it cleanly)."""
    import uvicorn

    from edgeinfer.runtime.llama_server import build_app

    check_exposure(host, api_key)
    if not 0 < max_request_mb <= 1024:
        raise ConfigError(f"{option('max_request_mb', max_request_mb)} must be above 0 and at most 1024")
    name = model_name or Path(model).stem
    announce(f"loading {model} (context {settings.n_ctx}, threads {settings.threads or 'auto'})")
    app = build_app(
        Path(model), settings, model_name=name, api_key=api_key, max_request_bytes=int(max_request_mb * 2**20)
    )
    shown = f"[{host}]" if ":" in host else host
    announce(
        f"serving {name!r} on http://{shown}:{port}/v1 (OpenAI API: /v1/chat/completions, /v1/completions, "
        f"/v1/models){'; API key required' if api_key else ''}. Ctrl-C stops it."
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
