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
    finally:
        assert s.stop() == 0


def test_serve_refuses_what_is_not_a_gguf_llm(tmp_path, capsys, smollm2):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    code, _, err = run_cli(capsys, "serve", onnx_file)
    assert code == 2 and "ONNX model" in err
    code, _, err = run_cli(capsys, "serve", smollm2, "--ctx", "1048576")
    assert code == 2 and ("KV cache" in err or "context" in err)
