"""An OpenAI-compatible HTTP server for a GGUF LLM: llama-cpp-python's own server (FastAPI:
/v1/chat/completions with streaming, /v1/completions, /v1/models), wrapped with what a local
server needs that it leaves out.

llama-cpp-python's server was chosen over writing one: it renders the model's own chat template,
streams server-sent events as the openai client expects, serialises requests on one model
behind a lock, stops generating when a streaming client disconnects, and turns llama.cpp's
context overflow into OpenAI's 400 `context_length_exceeded`. Around it, this module adds:
- the settings this project applies to every llama.cpp load (threads, context, GPU layers, the
  AMX / repacked-buffer workaround), and the KV-cache memory check before loading;
- requests queue instead of interrupting each other (its `interrupt_requests` is turned off);
- a streamed reply is generated a few tokens ahead of the sending, in a thread of its own
  (_RunAhead), instead of one threadpool round trip per token with nothing overlapping;
- a cap on the request body (a 10 MB prompt gets 413 before anything is tokenised);
- an unknown `model` name gets 400 `model_not_found` (the library falls back to its default);
- malformed parameters get 400 `invalid_request_error` naming them, checked against the library's
  own request models before its handler sees them (it would answer 500 with the validation
  dump); a missing API key gets OpenAI's 401 `invalid_api_key` JSON.
The server keeps module-level state (settings, locks, the loaded model): one per process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from edgeinfer.core.errors import MissingDependencyError
from edgeinfer.runtime.llama import (
    LlamaSettings,
    check_llm_file,
    generation_threads,
    model_params,
    use_extra_buffers,
)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_MAX_REQUEST_BYTES = 1 << 20  # 1 MiB of JSON: far above any context this runs, far below abuse


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None):
    """An OpenAI-style error object, as the openai client parses it."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _request_models() -> dict[str, Any]:
    """The library's pydantic models of the request bodies, by the end of their paths."""
    from llama_cpp.server.types import CreateChatCompletionRequest, CreateCompletionRequest, CreateEmbeddingRequest

    return {
        "/chat/completions": CreateChatCompletionRequest,
        "/completions": CreateCompletionRequest,
        "/embeddings": CreateEmbeddingRequest,
    }


def _validation_message(error) -> str:
    parts = []
    for e in error.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "bad request parameters: " + "; ".join(parts)


class RequestGuard:
    """ASGI middleware in front of the library's app: the API key, bounded request bodies, valid
    parameters and known model names, each refused with an OpenAI-style JSON error."""

    def __init__(self, app, model_name: str, max_bytes: int, api_key: str | None = None) -> None:
        self.app, self.model_name, self.max_bytes, self.api_key = app, model_name, max_bytes, api_key
        self.bodies = _request_models()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and scope["path"].startswith(("/v1", "/extras")):
            if headers.get(b"authorization", b"").decode("latin-1") != f"Bearer {self.api_key}":
                return await self._refuse(
                    send,
                    401,
                    error_body("a valid API key is required (Authorization: Bearer KEY)", code="invalid_api_key"),
                )
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, 413, self._too_large(int(declared)))
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(send, 413, self._too_large(len(body)))
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                return await self._refuse(send, 400, error_body("the request body is not valid JSON"))
            if not isinstance(data, dict):
                return await self._refuse(send, 400, error_body("the request body must be a JSON object"))
            kind = next((m for end, m in self.bodies.items() if scope["path"].endswith(end)), None)
            if kind is not None:
                from pydantic import ValidationError

                try:
                    kind.model_validate(data)
                except ValidationError as e:
                    return await self._refuse(send, 400, error_body(_validation_message(e)))
            model = data.get("model")
            if model in (None, ""):
                data["model"] = self.model_name  # responses then name the model, not its file path
                body = json.dumps(data).encode()
            elif model != self.model_name:
                return await self._refuse(
                    send,
                    400,
                    error_body(
                        f"The model {model!r} does not exist on this server; it serves {self.model_name!r}",
                        param="model",
                        code="model_not_found",
                    ),
                )
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    def _too_large(self, n: int):
        return error_body(
            f"the request body is {n / 2**20:.1f} MiB, over this server's limit of {self.max_bytes / 2**20:.1f} MiB "
            "(edgeinfer serve --max-request-mb)",
            code="request_too_large",
        )

    @staticmethod
    async def _refuse(send, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class _RunAhead:
    """The chunks of llama-cpp-python's blocking token stream, generated by one thread of their own
    that runs a few tokens ahead of the sender.

    The library's publisher fetches each chunk with a threadpool round trip and sends it before
    asking for the next, so sending (JSON, server-sent events, the socket) never overlaps with
    generating: about 1.2 ms per token, 0.90x of direct generation with a core to spare. Run ahead,
    the next token is computed while this one is sent (0.98x, benchmarks/serve.py). `stop` ends the
    generation and waits for the thread, so the model is never used after its lock is released."""

    def __init__(self, start, depth: int = 4) -> None:
        import queue
        import threading

        self._queue: Any = queue.Queue(depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(start,), name="edgeinfer-generate", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        """Hand one item to the sender; False once it has stopped listening."""
        import queue

        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, start) -> None:
        try:
            iterator = start()
            try:
                for chunk in iterator:
                    if not self._put(("chunk", chunk)):
                        break
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()  # llama-cpp-python's generator: ends the generation cleanly
        except BaseException as e:  # noqa: BLE001 - handed to the sender, which raises it
            self._put(("error", e))
            return
        self._put(("done", None))

    def __aiter__(self):
        return self

    async def __anext__(self):
        import anyio

        kind, value = await anyio.to_thread.run_sync(self._queue.get)
        if kind == "chunk":
            return value
        if kind == "error":
            raise value
        raise StopAsyncIteration

    async def stop(self) -> None:
        import anyio

        self._stopped.set()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._thread.join)


async def _publish_run_ahead(request, inner_send_chan, body, body_model, llama_call, kwargs) -> None:
    """Stands in for llama-cpp-python's `get_event_publisher` (same arguments, same lock, same
    events): streams one request's chunks as server-sent events, generating ahead (_RunAhead)."""
    import contextlib

    import anyio
    from llama_cpp.server import app as server_app

    async with contextlib.asynccontextmanager(server_app.get_llama_proxy)() as proxy:
        # None when no model is loaded: the library's own check answers 503 for it.
        llama = server_app.prepare_request_resources(body, cast(Any, proxy), body_model, kwargs)
        async with inner_send_chan:
            chunks = _RunAhead(lambda: llama_call(llama, **kwargs))
            try:
                async for chunk in chunks:
                    await inner_send_chan.send(dict(data=json.dumps(chunk)))
                    if await request.is_disconnected():  # the client left: stop generating
                        raise anyio.get_cancelled_exc_class()()
                await inner_send_chan.send(dict(data="[DONE]"))
            finally:
                await chunks.stop()


def build_app(
    model: Path,
    settings: LlamaSettings,
    *,
    model_name: str,
    api_key: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
):
    """The ASGI app serving `model` under `model_name` (loads the model now)."""
    try:
        from llama_cpp.server import app as server_app
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as e:
        raise MissingDependencyError(
            "llama-cpp-python[server]", "edgeinfer serve (pip install 'edgeinfer[serve]')"
        ) from e

    check_llm_file(Path(model), settings.n_ctx)
    server = ServerSettings(api_key=api_key, interrupt_requests=False)
    model_settings = ModelSettings(
        model=str(model),
        model_alias=model_name,
        n_ctx=settings.n_ctx,
        n_threads=generation_threads(settings),
        n_threads_batch=settings.threads or ModelSettings.model_fields["n_threads_batch"].default,
        n_gpu_layers=settings.n_gpu_layers,
        seed=settings.seed,
        verbose=False,
    )
    with model_params(use_extra_buffers(settings)):
        app = create_app(server_settings=server, model_settings=[model_settings])
    # The routes look the publisher up by name when a streaming request arrives.
    server_app.get_event_publisher = _publish_run_ahead

    return RequestGuard(app, model_name, max_request_bytes, api_key)
