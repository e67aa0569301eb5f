"""`edgeinfer serve` against calling llama-cpp-python directly: streamed generation speed.

    python benchmarks/serve.py [--out /tmp/edgeinfer-bench] [--runs 5]

SmolLM2-135M Q4_K_M. Server processes (`edgeinfer serve`, 1 and 2 threads) and, in this process,
the same file on llama-cpp-python with the same settings. Each run streams one 128-token greedy
completion through the openai client, then the same completion directly, interleaved; generation
speed is tokens after the first over the time from the first token to the last (prompt processing
excluded, as `bench`'s tg figure does). The medians' ratio is the server's cost. With as many
llama.cpp threads as cores, the server's and the client's own Python work (JSON, server-sent
events) competes with generation for the cores; with one core left free it does not.
"""

from __future__ import annotations

import os
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
THREAD_COUNTS = (1, 2)


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
    servers, directs, clients = {}, {}, {}
    try:
        for threads in THREAD_COUNTS:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cmd = [sys.executable, "-m", "edgeinfer", "serve", str(model), "--port", str(port)]
            servers[threads] = subprocess.Popen(
                [*cmd, "--threads", str(threads), "--model-name", "smol", "--ctx", "512"], stderr=subprocess.DEVNULL
            )
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            clients[threads] = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
            directs[threads] = llama_cpp.Llama(
                str(model), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False
            )

        def via_server(threads: int):
            stream = clients[threads].completions.create(
                model="smol", prompt=PROMPT, max_tokens=TOKENS, temperature=0, stream=True
            )
            return _timed(c for c in stream if c.choices and c.choices[0].text)

        def via_library(threads: int):
            stream: Any = directs[threads].create_completion(PROMPT, max_tokens=TOKENS, temperature=0, stream=True)
            return _timed(c for c in stream if c["choices"][0]["text"])

        served: dict[int, list[float]] = {t: [] for t in THREAD_COUNTS}
        called: dict[int, list[float]] = {t: [] for t in THREAD_COUNTS}
        for threads in THREAD_COUNTS:  # warm-up, all
            via_server(threads)
            via_library(threads)
        for _ in range(args.runs):
            for threads in THREAD_COUNTS:
                n, t = via_server(threads)
                served[threads].append(n / t)
                n, t = via_library(threads)
                called[threads].append(n / t)
                print(
                    f"{threads}T: serve {served[threads][-1]:.1f} tok/s, direct {called[threads][-1]:.1f}", flush=True
                )
    finally:
        for server in servers.values():
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    rows = []
    for threads in THREAD_COUNTS:
        s_med, c_med = statistics.median(served[threads]), statistics.median(called[threads])
        rows += [
            [
                f"edgeinfer serve, openai client, streamed, {threads} thread(s)",
                f"{s_med:.1f}",
                ", ".join(f"{x:.1f}" for x in served[threads]),
                f"{s_med / c_med:.2f}x",
            ],
            [
                f"llama-cpp-python create_completion, streamed, {threads} thread(s)",
                f"{c_med:.1f}",
                ", ".join(f"{x:.1f}" for x in called[threads]),
                "1.00x",
            ],
        ]
    write_section(
        "edgeinfer serve against llama-cpp-python called directly: SmolLM2-135M Q4_K_M",
        f"python benchmarks/serve.py --runs {args.runs}",
        ["path", "generation tokens/s (median)", "runs", "ratio"],
        rows,
        f"{TOKENS}-token greedy completions, context 512, {os.cpu_count()} cores, interleaved; tokens after the "
        "first over first-to-last token time (server-sent events and JSON included for the server).",
    )


if __name__ == "__main__":
    main()
