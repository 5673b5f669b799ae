"""GPU endpoint benchmark: embedding passages/s through the endpoint at several concurrencies,
against direct in-process encoding, in the same run and process (same torch threads).

    .venv/bin/python bench/gpu_endpoint.py [--limit N] [--per-request N] [--concurrency 1,8,32]

The endpoint runs in-process under uvicorn on a free localhost port, in a thread: requests go
through real sockets, HTTP parsing and JSON both ways, which is the overhead a client pays (an
ASGI transport would skip all of it and flatter the endpoint). Passages are BEIR SciFact
abstracts (title + text). Prints figures; asserts nothing (shared machines are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATASET = REPO.parent / "shared" / "datasets" / "scifact"


def load_passages(corpus: Path, limit: int) -> list[str]:
    passages: list[str] = []
    with corpus.open() as lines:
        for line in lines:
            doc = json.loads(line)
            passages.append(f"{doc['title']} {doc['text']}".strip())
            if len(passages) == limit:
                break
    return passages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_endpoint(threads: int, max_wait_ms: float) -> tuple[Any, Any, str]:
    """(uvicorn server, the app's model service, base URL), serving once models are loaded."""
    import uvicorn

    from gpu_endpoint.app import create_app
    from gpu_endpoint.settings import GpuEndpointSettings

    settings = GpuEndpointSettings(
        device="cpu", ocr_enabled=False, torch_threads=threads, max_wait_ms=max_wait_ms
    )
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="gpu-endpoint", daemon=True).start()
    deadline = time.monotonic() + 300
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the endpoint did not start")
        time.sleep(0.1)
    return server, app.state.service, f"http://127.0.0.1:{port}"


def batching(service: Any) -> dict[str, int]:
    stats: dict[str, int] = service.health().models["embedding"].batching
    return dict(stats)


async def through_endpoint(
    url: str, service: Any, passages: list[str], per_request: int, concurrency: int
) -> tuple[float, float, dict[str, int]]:
    """(passages/s, mean request latency in ms, batcher figures for the run) with
    ``concurrency`` requests in flight."""
    import httpx

    requests = [passages[i : i + per_request] for i in range(0, len(passages), per_request)]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:

        async def worker() -> None:
            while not queue.empty():
                texts = queue.get_nowait()
                sent = time.perf_counter()
                response = await http.post("/embed", json={"texts": texts})
                response.raise_for_status()
                assert len(response.json()["vectors"]) == len(texts)
                latencies.append(time.perf_counter() - sent)

        await http.post("/embed", json={"texts": passages[:per_request]})  # warm connections
        before = batching(service)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        after = batching(service)
    run = {
        "batches": after["batches_run"] - before["batches_run"],
        "items": after["items_run"] - before["items_run"],
        "batch_size": after["batch_size"],
    }
    return len(passages) / elapsed, 1000 * sum(latencies) / len(latencies), run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default=str(DATASET / "corpus.jsonl"))
    parser.add_argument("--limit", type=int, default=256, help="Passages per run.")
    parser.add_argument("--per-request", type=int, default=8, help="Passages per request.")
    parser.add_argument("--concurrency", default="1,8,32", help="Requests in flight, a list.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both sides).")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="Batcher max wait.")
    args = parser.parse_args()

    from shared.adapters.local_models import minilm_model_dir
    from shared.adapters.transformer_embedder import TransformerEmbedder

    passages = load_passages(Path(args.corpus), args.limit)
    print(
        f"{len(passages)} SciFact passages, {args.per_request} per request, "
        f"{args.threads} torch threads"
    )

    server, service, url = start_endpoint(args.threads, args.max_wait_ms)
    direct = TransformerEmbedder(minilm_model_dir(), workers=args.threads)
    direct.embed(passages[:8])  # load and warm up

    def direct_rate() -> float:
        started = time.perf_counter()
        direct.embed(passages)
        return len(passages) / (time.perf_counter() - started)

    # Direct encoding is timed before and after the endpoint runs, and the mean is the baseline:
    # on a shared machine the load can change in between.
    before = direct_rate()
    rows: list[tuple[int, float, float, dict[str, int]]] = []
    try:
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            rate, latency, run = asyncio.run(
                through_endpoint(url, service, passages, args.per_request, concurrency)
            )
            rows.append((concurrency, rate, latency, run))
    finally:
        server.should_exit = True
    after = direct_rate()
    baseline = (before + after) / 2

    print(
        f"{'direct in-process':<24}{baseline:>10.1f} passages/s "
        f"(before {before:.1f}, after {after:.1f})"
    )
    print(
        f"{'endpoint':<24}{'passages/s':>10}{'vs direct':>11}{'latency ms':>12}"
        f"{'batches':>9}{'mean batch':>12}{'batch size':>12}"
    )
    for concurrency, rate, latency, run in rows:
        mean_batch = run["items"] / max(run["batches"], 1)
        print(
            f"{f'concurrency {concurrency}':<24}{rate:>10.1f}{rate / baseline:>10.2f}x"
            f"{latency:>12.0f}{run['batches']:>9}{mean_batch:>12.1f}{run['batch_size']:>12}"
        )


if __name__ == "__main__":
    main()
