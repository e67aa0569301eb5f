"""What stands between an HTTP client and llama.cpp in `edgeinfer serve`: every request checked
before llama-cpp-python's app (and so llama.cpp) sees it.

llama.cpp is C++: a grammar it cannot parse (`root ::= (`, a rule that is never defined, left
recursion) makes its sampler constructor return NULL, which llama-cpp-python adds to its sampler
chain anyway (SIGSEGV); 20,000 nested parentheses overflow its recursive parser's stack; a token
id outside the vocabulary aborts the process (`std::out_of_range`). One request must never end the
server, so:
- grammars, written by the client or made by llama-cpp-python from a JSON schema or a tool's
  parameters, are compiled first by llama.cpp itself in a throwaway child process that loads only
  the vocabulary (`check_grammar`); one it refuses, or that crashes or stalls it, is a 400 (the
  verdict is cached by the grammar's hash, so a repeated grammar costs nothing);
- token ids (`/extras/detokenize`, `logit_bias`) are checked against the vocabulary;
- the request must be JSON (415 otherwise), a non-empty object (400), of bounded size (413), with
  parameters the library's own request models accept (400 naming them) and a known model (400);
- with an API key, every route needs it (the docs and the OpenAPI schema too), compared in
  constant time; CORS is off unless an origin is named; a 500 never shows the server's internals.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

COMPLETION_PATHS = ("/v1/completions", "/v1/engines/copilot-codex/completions")
MAX_GRAMMAR_BYTES = 64 << 10  # the JSON grammar llama.cpp ships is 1 KB; a schema's is a few KB
GRAMMAR_CHECK_SECONDS = 30

_GRAMMAR_CHILD = r"""
import sys
import llama_cpp

path, root = sys.argv[1], sys.argv[2]
grammar = sys.stdin.buffer.read()
params = llama_cpp.llama_model_default_params()
params.vocab_only = True
model = llama_cpp.llama_model_load_from_file(path.encode(), params)
if not model:
    sys.exit(3)
sampler = llama_cpp.llama_sampler_init_grammar(llama_cpp.llama_model_get_vocab(model), grammar, root.encode())
print("ok" if sampler else "refused", flush=True)
"""


class GrammarError(ValueError):
    """A grammar llama.cpp would not compile; its message starts with `invalid grammar:`."""


class GrammarCheck:
    """Compiles grammars with llama.cpp in a child process (see the module docstring) and keeps
    the last verdicts. Thread-safe: requests are checked from the server's threadpool."""

    def __init__(self, model: Path, capacity: int = 256) -> None:
        self.model = Path(model)
        self.verdicts: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self.capacity = capacity
        self.lock = threading.Lock()

    def problem(self, grammar: str, root: str = "root") -> str | None:
        """None when llama.cpp compiles `grammar`; else why not, in one line."""
        data = grammar.encode("utf-8", "replace")
        if len(data) > MAX_GRAMMAR_BYTES:
            return f"the grammar is {len(data)} bytes; at most {MAX_GRAMMAR_BYTES}"
        if not data.strip():
            return "the grammar is empty"
        key = hashlib.sha256(root.encode() + b"\0" + data).hexdigest()
        with self.lock:
            if key in self.verdicts:
                self.verdicts.move_to_end(key)
                return self.verdicts[key]
        verdict = self._compile(data, root)
        with self.lock:
            self.verdicts[key] = verdict
            while len(self.verdicts) > self.capacity:
                self.verdicts.popitem(last=False)
        return verdict

    def _compile(self, data: bytes, root: str) -> str | None:
        from edgeinfer.core.child import isolated_python

        try:
            done = subprocess.run(
                isolated_python("-c", _GRAMMAR_CHILD, str(self.model), root),
                input=data,
                capture_output=True,
                timeout=GRAMMAR_CHECK_SECONDS,
            )
        except subprocess.TimeoutExpired:
            return f"llama.cpp did not finish compiling the grammar within {GRAMMAR_CHECK_SECONDS} s"
        if done.returncode == 0 and done.stdout.strip() == b"ok":
            return None
        said = [
            line.strip()
            for line in done.stderr.decode("utf-8", "replace").splitlines()
            if "grammar" in line.lower() or "parse" in line.lower() or "rule" in line.lower()
        ]
        if done.returncode < 0:
            return "llama.cpp crashed compiling it (too deeply nested?)"
        return (said[0][:200] if said else "llama.cpp refused it") if done.returncode == 0 else "llama.cpp refused it"


def guard_samplers(check: GrammarCheck) -> None:
    """Route every grammar llama-cpp-python hands to llama.cpp through `check` first: its own
    grammars from JSON schemas and tool parameters as well as the client's."""
    from llama_cpp import _internals

    sampler = _internals.LlamaSampler
    if getattr(sampler, "_edgeinfer_guarded", None) is check:
        return
    original = getattr(sampler, "_edgeinfer_original", sampler.add_grammar)

    def add_grammar(self, model, grammar):
        why = check.problem(grammar._grammar, grammar._root)
        if why is not None:
            raise GrammarError(f"invalid grammar: {why}")
        return original(self, model, grammar)

    sampler._edgeinfer_original = original  # pyright: ignore[reportAttributeAccessIssue]
    sampler._edgeinfer_guarded = check  # pyright: ignore[reportAttributeAccessIssue]
    sampler.add_grammar = add_grammar
    # The lazy variant (tool calls that switch the grammar on at a trigger word) takes the same
    # grammar text; refusing it outright is simpler than checking a second entry point.
    sampler.add_grammar_lazy_patterns = _refuse_lazy  # pyright: ignore[reportAttributeAccessIssue]


def _refuse_lazy(self, *args, **kwargs):
    raise GrammarError("invalid grammar: lazy (trigger-word) grammars are not served by edgeinfer")


def grammar_errors_are_400() -> None:
    """Teach llama-cpp-python's route error handler that a refused grammar is the client's error."""
    import re

    from llama_cpp.server.errors import RouteErrorHandler

    pattern = re.compile(r"invalid grammar: (.+)")
    if pattern.pattern in {p.pattern for p in RouteErrorHandler.pattern_and_formatters}:
        return

    def formatter(request, match):
        return 400, {"message": f"invalid grammar: {match.group(1)}", "type": "invalid_request_error",
                     "param": "grammar", "code": "invalid_grammar"}  # fmt: skip

    RouteErrorHandler.pattern_and_formatters[pattern] = formatter  # pyright: ignore[reportArgumentType]


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None):
    """An OpenAI-style error object, as the openai client parses it."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _request_models() -> dict[str, Any]:
    """The library's pydantic models of the request bodies, by their paths."""
    from llama_cpp.server.types import (
        CreateChatCompletionRequest,
        CreateCompletionRequest,
        CreateEmbeddingRequest,
        DetokenizeInputRequest,
        TokenizeInputRequest,
    )

    return {
        "/v1/chat/completions": CreateChatCompletionRequest,
        "/v1/completions": CreateCompletionRequest,
        "/v1/engines/copilot-codex/completions": CreateCompletionRequest,
        "/v1/embeddings": CreateEmbeddingRequest,
        "/extras/tokenize": TokenizeInputRequest,
        "/extras/tokenize/count": TokenizeInputRequest,
        "/extras/detokenize": DetokenizeInputRequest,
    }


def _validation_message(error) -> str:
    parts = []
    for e in error.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "bad request parameters: " + "; ".join(parts)


class Refusal(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.status, self.body = status, body


def _bad(message: str, param: str | None = None, code: str | None = None) -> Refusal:
    return Refusal(400, error_body(message, param=param, code=code))


class RequestGuard:
    """ASGI middleware in front of the library's app (see the module docstring)."""

    def __init__(
        self,
        app,
        model_name: str,
        max_bytes: int,
        api_key: str | None = None,
        *,
        n_vocab: int,
        grammars: GrammarCheck | None = None,
        no_chat: str | None = None,
    ) -> None:
        self.app, self.model_name, self.max_bytes, self.api_key = app, model_name, max_bytes, api_key
        self.n_vocab, self.grammars = n_vocab, grammars
        self.no_chat = no_chat  # why chat completions are refused (a GGUF without a chat template)
        self.bodies = _request_models()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            body = await self._check(scope, receive)
        except Refusal as r:
            return await self._refuse(send, r.status, r.body)
        if body is None:
            return None  # the client left
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, _hide_internal_errors(send))

    async def _check(self, scope, receive) -> bytes | None:
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, f"Bearer {self.api_key}".encode()):
                raise Refusal(
                    401, error_body("a valid API key is required (Authorization: Bearer KEY)", code="invalid_api_key")
                )
        if scope["method"] != "POST":
            return b""
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise Refusal(413, self._too_large(int(declared)))
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                raise Refusal(413, self._too_large(len(body)))
        kind = self.bodies.get(scope["path"].rstrip("/"))
        if scope["path"].rstrip("/") == "/v1/embeddings":  # the model is loaded for generation only
            raise Refusal(404, error_body("this server generates text; it does not serve embeddings", code="not_found"))
        if kind is None:
            return body  # a route the library answers itself (404, 405)
        if self.no_chat and scope["path"].rstrip("/") == "/v1/chat/completions":
            raise _bad(self.no_chat, code="no_chat_template")
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            raise Refusal(
                415,
                error_body(
                    f"the request body must be JSON (Content-Type: application/json), not {media.decode('latin-1') or 'unnamed'}",
                    code="unsupported_media_type",
                ),
            )
        if not body.strip():
            raise _bad("the request body is empty; send a JSON object")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise _bad("the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _bad("the request body must be a JSON object")
        from pydantic import ValidationError

        try:
            kind.model_validate(data)
        except ValidationError as e:
            raise _bad(_validation_message(e)) from None
        except (RecursionError, ValueError) as e:
            raise _bad(
                f"bad request parameters: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"
            ) from None
        self._check_content(data, scope["path"].rstrip("/"))
        model = data.get("model")
        if model in (None, ""):
            data["model"] = self.model_name  # responses then name the model, not its file path
            body = json.dumps(data).encode()
        elif model != self.model_name:
            raise _bad(
                f"The model {model!r} does not exist on this server; it serves {self.model_name!r}",
                param="model",
                code="model_not_found",
            )
        return body

    def _check_content(self, data: dict[str, Any], path: str) -> None:
        """What the request models let through but llama.cpp cannot take."""
        for key in ("tokens",):
            if key in data:
                self._check_tokens(data[key], key)
        bias = data.get("logit_bias")
        if isinstance(bias, dict):
            for token in bias:
                try:
                    tid = int(token)
                except (TypeError, ValueError):
                    raise _bad(f"logit_bias key {token!r} is not a token id", param="logit_bias") from None
                self._check_tokens([tid], "logit_bias")
        # The library's default is the empty prompt, on which it fails or generates without end.
        prompt = data.get("prompt", "")
        if path in COMPLETION_PATHS and prompt in ("", [], [""]):
            raise _bad("prompt is empty; give at least one character", param="prompt")
        if "messages" in data and data["messages"] == []:
            raise _bad("messages is empty; give at least one message", param="messages")
        messages = data.get("messages") if path == "/v1/chat/completions" else None
        for i, message in enumerate(messages or []):  # dicts: the request model refused anything else
            content = message.get("content")
            parts_ok = isinstance(content, list) and all(
                isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
            )
            if not isinstance(content, str) and not parts_ok and message.get("role") != "assistant":
                # The chat template renders text; anything else fails inside it (a 500 before the guard).
                raise _bad(f"messages[{i}].content must be text (a string, or text parts)", param="messages")
        grammar = data.get("grammar")
        if isinstance(grammar, str) and self.grammars is not None:
            why = self.grammars.problem(grammar)
            if why is not None:
                raise _bad(f"invalid grammar: {why}", param="grammar", code="invalid_grammar")

    def _check_tokens(self, tokens: Any, param: str) -> None:
        if not isinstance(tokens, list):
            return  # the request model has refused it already
        wrong = [t for t in tokens if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < self.n_vocab]
        if wrong:
            raise _bad(
                f"{param}: token id {str(wrong[0])[:30]} is outside this model's vocabulary (0 ... {self.n_vocab - 1})",
                param=param,
            )

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


def _hide_internal_errors(send):
    """A `send` that replaces the body of a 500 with a generic error: llama-cpp-python puts the
    exception's text (file paths, library internals) into its 500s; the server's log keeps it."""
    hiding = False

    async def wrapped(message):
        nonlocal hiding
        if message["type"] == "http.response.start" and message.get("status", 200) >= 500:
            hiding = True
            payload = json.dumps(
                error_body("the server failed on this request; its log says why", kind="server_error")
            ).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            await send({"type": "http.response.start", "status": message["status"], "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        if hiding:
            return  # the original body (and any more of it) is dropped
        await send(message)

    return wrapped
