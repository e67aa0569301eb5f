"""`edgeinfer serve`: a model behind an OpenAI-compatible HTTP server, made by its runtime backend
(edgeinfer.runtime.serving_app; today llama.cpp's, runtime/llama_server.py, for GGUF LLMs)."""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from pathlib import Path

from edgeinfer.core.errors import ConfigError, option
from edgeinfer.runtime import Target


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
    given: Target = Target(),
    profile=None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    model_name: str | None = None,
    max_request_mb: float = 1.0,
    cors: tuple[str, ...] = (),
    chat_format: str | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Load `model` on the runtime its kind takes (the user's options in `given`, the device
    profile's for the rest) and serve it until interrupted (Ctrl-C stops it cleanly). `cors`: web
    origins whose pages may call the server from a browser (none by default). `chat_format`: a GGUF
    without a chat template gets one of llama-cpp-python's formats (else its chat route answers 400)."""
    import uvicorn

    from edgeinfer.pipelines.target import describe_target, resolve_target
    from edgeinfer.runtime import serving_app

    check_exposure(host, api_key)
    if not 0 < max_request_mb <= 1024:
        raise ConfigError(f"{option('max_request_mb', max_request_mb)} must be above 0 and at most 1024")
    for origin in cors:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
            raise ConfigError(
                f"{option('cors', origin)} must be a web origin, e.g. http://localhost:3000 (no path, no *)"
            )
    target = resolve_target(model, profile, given)  # options this runtime would ignore: exit 2, nothing bound
    if chat_format:
        from edgeinfer.runtime.llama import check_chat_format

        check_chat_format(chat_format)  # before the port is bound
    _stop_on_signals()
    sock = bind_port(host, port)
    name = model_name or Path(model).stem
    announce(f"loading {model} ({describe_target(target)})")
    try:
        app = serving_app(
            Path(model),
            target,
            model_name=name,
            api_key=api_key,
            max_request_bytes=int(max_request_mb * 2**20),
            cors_origins=tuple(cors),
            **({"chat_format": chat_format} if chat_format else {}),
        )
    except BaseException:
        sock.close()
        raise
    shown = f"[{host}]" if ":" in host else host
    announce(
        f"serving {name!r} on http://{shown}:{port}/v1 (OpenAI API: /v1/chat/completions, /v1/completions, "
        f"/v1/models){'; API key required' if api_key else ''}. Ctrl-C stops it."
    )
    # uvicorn serves on the socket bound before loading: a port in use was refused (exit 2) before
    # the model loaded and before "serving ... on" was printed, and nothing can take it meanwhile.
    # A stop waits up to 10 s for requests in flight, then ends them: a stuck client never holds it.
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on; that is a clean stop
        pass


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop the server cleanly (exit 0 once serving), also while the
    model loads: a server started with `&` by a script inherits SIGINT ignored, which would make
    `kill -INT $SERVER` wait forever; and uvicorn re-raises the signal it shut down on, which for
    SIGTERM would end the process with 143 after a clean shutdown."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def bind_port(host: str, port: int):
    """A listening socket on host:port, or one line saying why not (in use, not an address here)."""
    import socket

    if not 0 < port < 65536:
        raise ConfigError(f"{option('port', port)} must be 1 ... 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"{option('host', host)} is not an address of this machine ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use by another program; choose another with {option('port', 'N')}"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock
