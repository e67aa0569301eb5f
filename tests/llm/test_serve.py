"""`edgeinfer serve`: a real server process on a free local port, talked to with the official
openai client: chat (streaming and not), completions, models; queued concurrent requests; OpenAI
errors for bad requests; the API key when exposed; a disconnecting client frees the model."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow
NAME = "smol"
PROMPTS = ["What is the capital of France?", "Name three colours.", "Count from one to five."]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        cmd = [sys.executable, "-m", "edgeinfer", "serve", str(model), "--port", str(self.port), "--model-name", NAME]
        self.proc = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                urllib.request.urlopen(f"{self.url}/models", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # listening (a 401 from a server with a key)
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("serve did not start listening within 90 s")

    def client(self, key: str = "none"):
        import openai

        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=120)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="module")
def server(smollm2):
    s = Server(smollm2, "--ctx", "1024")
    yield s
    assert s.stop() == 0  # Ctrl-C stops it cleanly


def _chat(client, prompt: str, stream: bool = False, max_tokens: int = 24) -> str:
    messages = [{"role": "user", "content": prompt}]
    if not stream:
        r = client.chat.completions.create(model=NAME, messages=messages, max_tokens=max_tokens, temperature=0)
        return r.choices[0].message.content
    pieces = client.chat.completions.create(
        model=NAME, messages=messages, max_tokens=max_tokens, temperature=0, stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)


def test_chat_streams_the_same_greedy_answer_and_names_the_model(server):
    client = server.client()
    assert [m.id for m in client.models.list().data] == [NAME]
    r = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=24, temperature=0
    )
    assert r.model == NAME and r.usage.completion_tokens > 0
    text = r.choices[0].message.content
    assert text.strip() and "<|im_start|>" not in text  # the chat template's tokens are not echoed
    assert _chat(client, PROMPTS[0], stream=True) == text
    done = client.completions.create(model=NAME, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert "Paris" in done.choices[0].text


def test_concurrent_requests_queue_and_each_gets_its_own_answer(server):
    client = server.client()
    alone = [_chat(client, p) for p in PROMPTS]
    together: dict[int, str] = {}

    def ask(i: int) -> None:
        together[i] = _chat(server.client(), PROMPTS[i % 3], stream=i % 2 == 0)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(set(alone)) == 3
    assert [together[i] for i in range(6)] == [alone[i % 3] for i in range(6)]


def test_bad_requests_get_openai_errors_with_400_and_413(server):
    import openai

    client = server.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found" and NAME in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=NAME, prompt="word " * 1500, max_tokens=4)
    assert e.value.code == "context_length_exceeded" and "1024" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=NAME, messages="not a list", max_tokens=4)  # type: ignore[arg-type]
    assert "messages" in str(e.value) and "Traceback" not in str(e.value) and "File " not in str(e.value)
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(model=NAME, prompt="a" * (10 * 2**20), max_tokens=4)
    assert e.value.status_code == 413 and "over this server's limit" in str(e.value)
    assert _chat(client, PROMPTS[1], max_tokens=4)  # still serving


def test_a_client_that_disconnects_mid_stream_frees_the_model(server):
    client = server.client()
    start = time.monotonic()
    timed = client.completions.create(model=NAME, prompt="Once upon a time", max_tokens=64, temperature=0)
    per_token = (time.monotonic() - start) / max(timed.usage.completion_tokens, 1)
    body = {"model": NAME, "prompt": "Once upon a time", "max_tokens": 900, "temperature": 0, "stream": True}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    chunks = 0
    while chunks < 3:
        chunks += response.readline().startswith(b"data:")
    conn.close()  # leave after three tokens
    start = time.monotonic()
    assert _chat(client, PROMPTS[2], max_tokens=8)
    # Not queued behind the ~900 tokens the abandoned stream asked for (they would take 900 x per_token).
    assert time.monotonic() - start < 0.3 * 900 * per_token


def test_an_exposed_server_needs_its_api_key(smollm2, capsys):
    import openai

    code, _, err = run_cli(capsys, "serve", smollm2, "--host", "0.0.0.0")
    assert code == 2 and "--api-key" in err  # refused before anything loads
    s = Server(smollm2, "--api-key", "s3cret", "--ctx", "256")
    try:
        with pytest.raises(openai.AuthenticationError):
            _chat(s.client("wrong"), "hi", max_tokens=2)
        assert _chat(s.client("s3cret"), "hi", max_tokens=2)
        for path in ("/docs", "/openapi.json", "/redoc", "/v1/models"):  # nothing is open without the key
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f"http://127.0.0.1:{s.port}{path}", timeout=30)
            assert e.value.code == 401
        keyed = urllib.request.Request(
            f"http://127.0.0.1:{s.port}/openapi.json", headers={"Authorization": "Bearer s3cret"}
        )
        with urllib.request.urlopen(keyed, timeout=30) as r:
            assert r.status == 200
    finally:
        assert s.stop() == 0


def test_serve_refuses_what_is_not_a_gguf_llm(tmp_path, capsys, smollm2):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    code, _, err = run_cli(capsys, "serve", onnx_file)
    assert code == 2 and "ONNX model" in err
    code, _, err = run_cli(capsys, "serve", smollm2, "--ctx", "1048576")
    assert code == 2 and ("KV cache" in err or "context" in err)


def _post(port: int, path: str, body: bytes | str, content_type: str = "application/json", headers=None):
    """(status, parsed JSON or text) of one raw request (a few tokens at most: 60 s is a hang)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = body.encode() if isinstance(body, str) else body
    conn.request("POST", path, data, {"Content-Type": content_type, **(headers or {})})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode("utf-8", "replace")


def _models_answer(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=30) as r:
        return [m["id"] for m in json.loads(r.read())["data"]] == [NAME]


HOSTILE = [
    # llama.cpp's grammar parser: NULL sampler (SIGSEGV) or stack overflow before the guard
    ("/v1/completions", {"prompt": "Hi", "max_tokens": 4, "grammar": "root ::= ("}, 400, "invalid grammar"),
    ("/v1/completions", {"prompt": "Hi", "max_tokens": 4, "grammar": "root ::= a\na ::= a"}, 400, "left recursion"),
    ("/v1/completions", {"prompt": "Hi", "max_tokens": 4, "grammar": "root ::= foo"}, 400, "invalid grammar"),
    ("/v1/completions", {"prompt": "Hi", "max_tokens": 4, "grammar": "root ::= " + "(" * 20000 + '"a"' + ")" * 20000},
     400, "invalid grammar"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "grammar": "root ::= ("},
     400, "invalid grammar"),
    # std::out_of_range in llama.cpp (exit 134) before the guard
    ("/extras/detokenize", {"tokens": [-1]}, 400, "outside this model's vocabulary"),
    ("/extras/detokenize", {"tokens": [999999999]}, 400, "outside this model's vocabulary"),
    ("/v1/completions", {"prompt": "Hi", "max_tokens": 2, "logit_bias": {"99999999": 5}}, 400, "logit_bias"),
    # 500s before the guard
    ("/v1/completions", {"prompt": "", "max_tokens": 2}, 400, "prompt is empty"),
    ("/v1/completions", {"messages": [{"role": "user", "content": ""}], "max_tokens": 2}, 400, "prompt is empty"),
    ("/v1/chat/completions", {"messages": [], "max_tokens": 2}, 400, "messages is empty"),
]  # fmt: skip


@pytest.mark.parametrize("path,body,status,says", HOSTILE, ids=[f"{p}-{i}" for i, (p, *_) in enumerate(HOSTILE)])
def test_a_hostile_request_gets_a_4xx_and_the_server_keeps_serving(server, path, body, status, says):
    code, answer = _post(server.port, path, json.dumps(body))
    assert code == status and says in answer["error"]["message"], answer
    assert server.proc.poll() is None and _models_answer(server.port)


def test_a_good_grammar_still_constrains_the_reply(server):
    body = {"prompt": "Is the sky blue?", "max_tokens": 4, "temperature": 0, "grammar": 'root ::= "yes" | "no"'}
    code, answer = _post(server.port, "/v1/completions", json.dumps(body))
    assert code == 200 and answer["choices"][0]["text"] in ("yes", "no")


def test_bodies_that_are_not_a_json_object_get_415_or_400_without_internals(server):
    code, answer = _post(server.port, "/v1/completions", '{"prompt": "Hi"}', content_type="text/plain")
    assert code == 415 and "application/json" in answer["error"]["message"]
    code, answer = _post(server.port, "/v1/completions", b"")
    assert code == 400 and "empty" in answer["error"]["message"]
    code, answer = _post(server.port, "/v1/completions", "[1, 2]")
    assert code == 400 and "JSON object" in answer["error"]["message"]
    for text in (json.dumps(answer),):
        assert "site-packages" not in text and "Traceback" not in text


def test_no_web_page_may_call_the_server_unless_its_origin_is_named(server):
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/v1/models", headers={"Origin": "http://evil.example"}
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.headers.get("access-control-allow-origin") is None
        assert r.headers.get("access-control-allow-credentials") is None


def test_a_port_in_use_is_refused_before_loading(smollm2, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        code, _, err = run_cli(capsys, "serve", smollm2, "--port", str(taken.getsockname()[1]))
    assert code == 2 and "in use" in err and "serving" not in err
    code, _, err = run_cli(capsys, "serve", smollm2, "--cors", "*")
    assert code == 2 and "web origin" in err


def test_fuzzed_requests_never_end_the_server(server):
    """A bounded fuzz of the HTTP API: random JSON bodies and grammars on every route; each answer
    is a 2xx or a 4xx with OpenAI's error object, and /v1/models answers after every one."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)  # fmt: skip
    grammar_text = st.text(alphabet='root:= |()*+?"ab[]-\\\n{}0123456789', max_size=40).map(lambda s: "root ::= " + s)
    fields = {
        "prompt": st.text(max_size=30) | st.lists(st.integers(-5, 60000), max_size=4) | values,
        "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "x"]), "content": st.text(max_size=20) | values}), max_size=2) | values,
        "max_tokens": st.integers(-3, 3) | values,
        "temperature": st.floats(-1, 3) | values,
        "grammar": grammar_text | values,
        "logit_bias": st.dictionaries(st.integers(-10, 10**9).map(str), st.floats(-100, 100), max_size=2) | values,
        "tokens": st.lists(st.integers(-(2**40), 2**40), max_size=4) | values,
        "input": st.text(max_size=20) | values,
        "stop": values,
        "top_k": values,
        "n": values,
        "model": st.sampled_from([NAME, "", "other"]) | values,
    }  # fmt: skip
    paths = ["/v1/completions", "/v1/chat/completions", "/extras/tokenize", "/extras/detokenize", "/v1/embeddings"]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.sampled_from(paths), st.fixed_dictionaries({}, optional=fields))
    def one(path, body):
        if body.get("max_tokens") is None or isinstance(body["max_tokens"], (int, float)):
            body["max_tokens"] = 2  # 0, negative and None mean "until the context is full" to the library
        try:
            payload = json.dumps(body)
        except ValueError:
            payload = json.dumps({"prompt": "x", "max_tokens": 1})
        code, answer = _post(server.port, path, payload)
        assert code < 500, (path, body, code, answer)
        if code >= 400:
            assert isinstance(answer, dict) and ("error" in answer or "detail" in answer), answer
        assert server.proc.poll() is None and _models_answer(server.port)

    one()


def test_a_server_started_in_the_background_stops_on_sigint_while_loading_and_on_sigterm(smollm2):
    """A script's `serve &` inherits SIGINT ignored: Ctrl-C's signal must still stop it, even before
    it listens; SIGTERM (what `kill` sends) is a clean stop, exit 0, like Ctrl-C."""
    cmd = [sys.executable, "-m", "edgeinfer", "serve", str(smollm2), "--port", str(_free_port())]
    ignoring = subprocess.Popen(cmd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(1.5)  # importing and loading: not listening yet
    ignoring.send_signal(signal.SIGINT)
    assert ignoring.wait(timeout=60) in (0, 130)
    s = Server(smollm2, "--ctx", "256")
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=30) == 0


def test_serve_goes_through_the_runtime_interface_with_every_option(smollm2, tmp_path):
    """serve builds its app through edgeinfer.runtime.serving_app, on the backend load() would pick,
    and the llama.cpp server gets the options every other load gets: context and KV-cache type
    (the server used to drop --kv-type); a model no backend can serve is refused naming what can."""
    import llama_cpp.server.app as server_app

    from edgeinfer.core.errors import InputError
    from edgeinfer.core.gguf_types import KvType
    from edgeinfer.runtime import Target, serving_app

    try:
        serving_app(smollm2, Target(n_ctx=256, kv_type=KvType.Q8_0), model_name="x")
        llm = server_app._llama_proxy._current_model
        assert llm.n_ctx() == 256
        assert llm.context_params.type_k == llm.context_params.type_v == 8  # GGML_TYPE_Q8_0
    finally:
        server_app._llama_proxy = None
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    with pytest.raises(InputError, match="m.onnx is an ONNX model; serve runs GGUF LLMs"):
        serving_app(onnx_file)


def test_serve_never_ignores_gpu_layers_it_cannot_offload(smollm2, capsys):
    """A GPU profile's layers on a llama.cpp without GPU offload: refused in one line naming
    --allow-fallback before serving (the server used to pass them to llama.cpp, which ignores them)."""
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python offloads to a GPU: the refusal is for builds that cannot")
    code, _, err = run_cli(capsys, "serve", smollm2, "--device", "jetson-orin", "--port", str(_free_port()))
    assert code == 2 and "GPU offload" in err and "--allow-fallback" in err and "serving" not in err
