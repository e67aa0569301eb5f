"""`edgeinfer serve` against calling llama-cpp-python directly: streamed generation speed.

    python benchmarks/serve.py [--out /tmp/edgeinfer-bench] [--runs 5]

SmolLM2-135M Q4_K_M. One server process (`edgeinfer serve`, 2 threads) and, in this process, the
same file on llama-cpp-python with the same settings. Each run streams one 128-token greedy
completion through the openai client, then the same completion directly, interleaved; generation
speed is tokens after the first over the time from the first token to the last (prompt processing
excluded, as `bench`'s tg figure does). The medians' ratio is the server's cost.
"""

from __future__ import annotations

import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _report import parse_args, write_section  # noqa: E402

PROMPT = "Once upon a time, in a small village by the sea, there lived"
TOKENS = 128
THREADS = 2


def _timed(pieces) -> tuple[int, float]:
    """(tokens after the first, seconds from the first token to the last) of a token stream."""
    first = last = None
    n = 0
    for _ in pieces:
        now = time.perf_counter()
        first = first or now
        last = now
        n += 1
    return n - 1, (last or 0) - (first or 0)


def main() -> None:
    import llama_cpp
    import openai

    from edgeinfer.compress.gguf_quant import GgufQuantConfig
    from edgeinfer.core.gguf_types import GgufType
    from edgeinfer.examples.smollm2 import hf_dir
    from edgeinfer.pipelines.export import export_model
    from edgeinfer.pipelines.llm import kquantize

    args = parse_args(__doc__, runs=5)
    f16 = args.out / "smollm2-f16.gguf"
    if not f16.exists():
        export_model(str(hf_dir()), f16)
    model = args.out / "smollm2-q4_k_m.gguf"
    if not model.exists():
        kquantize(f16, model, GgufQuantConfig(GgufType.Q4_K_M))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "edgeinfer", "serve", str(model), "--port", str(port), "--threads", str(THREADS)]
    server = subprocess.Popen([*cmd, "--model-name", "smol", "--ctx", "512"], stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
        direct = llama_cpp.Llama(str(model), n_ctx=512, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)

        def via_server():
            stream = client.completions.create(
                model="smol", prompt=PROMPT, max_tokens=TOKENS, temperature=0, stream=True
            )
            return _timed(c for c in stream if c.choices and c.choices[0].text)

        def via_library():
            stream: Any = direct.create_completion(PROMPT, max_tokens=TOKENS, temperature=0, stream=True)
            return _timed(c for c in stream if c["choices"][0]["text"])

        via_server()  # warm-up, both
        via_library()
        served, called = [], []
        for _ in range(args.runs):
            n, t = via_server()
            served.append(n / t)
            n, t = via_library()
            called.append(n / t)
            print(f"serve {served[-1]:.1f} tok/s, direct {called[-1]:.1f} tok/s", flush=True)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    s_med, c_med = statistics.median(served), statistics.median(called)
    write_section(
        "edgeinfer serve against llama-cpp-python called directly: SmolLM2-135M Q4_K_M",
        f"python benchmarks/serve.py --runs {args.runs}",
        ["path", "generation tokens/s (median)", "runs", "ratio"],
        [
            [
                "edgeinfer serve, openai client, streamed",
                f"{s_med:.1f}",
                ", ".join(f"{x:.1f}" for x in served),
                f"{s_med / c_med:.2f}x",
            ],
            [
                "llama-cpp-python create_completion, streamed",
                f"{c_med:.1f}",
                ", ".join(f"{x:.1f}" for x in called),
                "1.00x",
            ],
        ],  # fmt: skip
        f"{TOKENS}-token greedy completions, {THREADS} threads, context 512, interleaved; tokens after the first "
        "over first-to-last token time (server-sent events and JSON included for the server).",
    )


if __name__ == "__main__":
    main()
