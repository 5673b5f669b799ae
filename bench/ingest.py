"""Ingestion benchmark on BEIR SciFact: throughput, time per saga stage, peak memory, embedding
efficiency against this machine's matmul throughput, and keyword-index quality.

    .venv/bin/python bench/ingest.py [--corpus PATH] [--limit N] [--threads N]

Prints figures; asserts nothing (timings on shared machines are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATASET = REPO.parent / "shared" / "datasets" / "scifact"

# MiniLM-L6: 6 layers, hidden 384, feed-forward 1536.
LAYERS, HIDDEN, FFN = 6, 384, 1536


def encoder_flops(tokens: int, tokens_squared: int) -> float:
    """2 x multiply-adds of encoder passes over sequences with sum(L) = ``tokens`` and
    sum(L**2) = ``tokens_squared``: projections (Q, K, V, O) and feed-forward grow with L,
    attention scores and their weighted sum with L**2. About 5.7 GFLOP for one 256-token text."""
    dense = 2 * tokens * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)
    attention = 2 * 2 * tokens_squared * HIDDEN
    return LAYERS * (dense + attention)


class ConstantEmbedder:
    model_name = "all-MiniLM-L6-v2"
    dimension = 384

    def embed(self, texts: list[str]) -> object:
        import numpy as np

        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        vectors[:, 0] = 1.0
        return vectors


def matmul_gflops(threads: int, size: int = 2048, repeats: int = 10) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    elapsed = time.perf_counter() - started
    return 2 * size**3 * repeats / elapsed / 1e9


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def load_qrels(split: str) -> dict[str, set[str]]:
    qrels: dict[str, set[str]] = {}
    lines = (DATASET / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]
    for line in lines:
        qid, doc, score = line.strip().split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(doc)
    return qrels


async def run(args: argparse.Namespace) -> None:
    from shared.container import Container
    from shared.db.kb_repository import load_current_chunks
    from shared.db.migrate import upgrade
    from shared.ingestion.service import Upload
    from shared.kb.service import KbSpec
    from shared.settings import Settings

    corpus: bytes = args.corpus_bytes
    docs = corpus.count(b"\n")
    gflops = 0.0 if args.keyword_only else matmul_gflops(args.threads)

    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="quarry-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        models={"torch_threads": args.threads},
    )
    upgrade(settings.database_url)
    container = Container(settings)
    if args.keyword_only:
        # The keyword index does not depend on the vectors: skip the model for a quick check.
        container.__dict__["embedder"] = ConstantEmbedder()
    tenant = await container.kb_repository.ensure_tenant("bench")
    kb = await container.kb_service.create(tenant, KbSpec(name="scifact"))
    container.embedder.embed(["warm up"])  # model load is not ingestion throughput

    started = time.perf_counter()
    result = await container.ingestion_service.ingest_uploads(
        tenant, kb.id, [Upload("corpus.jsonl", corpus, "application/x-ndjson")]
    )
    total_s = time.perf_counter() - started
    assert result.run is not None
    assert result.run.status == "succeeded", result.run

    stages = await step_durations(container, result.run.id)
    if args.keyword_only:
        print(f"ingested {docs} documents in {total_s:.1f} s without embeddings")
        for name, seconds in stages.items():
            print(f"  stage {name:9}  {seconds:7.2f} s")
        await keyword_quality(container, tenant, kb, load_current_chunks)
        await container.aclose()
        return
    stats = container.embedder.stats  # type: ignore[attr-defined]
    warmup_tokens = 4  # the "warm up" text above
    embed_gflop = encoder_flops(stats.tokens, stats.tokens_squared) / 1e9
    embed_s = stages["embed"]
    texts = stats.texts - 1
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    other_s = total_s - embed_s

    print(f"documents        {docs}")
    mean_tokens = (stats.tokens - warmup_tokens) / texts
    padding = 100 * (1 - stats.tokens / stats.padded_tokens)
    print(f"chunks           {texts}  (mean {mean_tokens:.0f} tokens)")
    print(
        f"total            {total_s:.1f} s  {docs / total_s:.1f} docs/s  "
        f"{texts / total_s:.1f} chunks/s"
    )
    print(f"padding          {padding:.1f} % of computed tokens")
    for name, seconds in stages.items():
        print(f"  stage {name:9}  {seconds:7.2f} s  {100 * seconds / total_s:5.1f} %")
    print(f"non-embedding    {other_s:.1f} s  ({100 * other_s / total_s:.1f} % of ingest)")
    print(f"peak RSS         {peak_rss_mb:.0f} MiB")
    print(f"matmul fp32      {gflops:.1f} GFLOP/s ({args.threads} threads, torch 2048x2048)")
    print(
        f"embedding        {embed_gflop / embed_s:.1f} GFLOP/s achieved "
        f"({100 * embed_gflop / embed_s / gflops:.0f} % of matmul; {embed_gflop:.0f} GFLOP)"
    )

    if args.limit == 0:
        await keyword_quality(container, tenant, kb, load_current_chunks)
    await container.aclose()


async def step_durations(container: object, run_id: uuid.UUID) -> dict[str, float]:
    from sqlalchemy import select

    from shared.db.models import SagaStepRun

    async with container.database.session() as session:  # type: ignore[attr-defined]
        steps = (
            await session.scalars(
                select(SagaStepRun)
                .where(SagaStepRun.run_id == run_id)
                .order_by(SagaStepRun.ordinal)
            )
        ).all()
    return {s.name: (s.duration_ms or 0.0) / 1000 for s in steps}


async def keyword_quality(container: object, tenant: uuid.UUID, kb: object, loader: object) -> None:
    """nDCG@10 of the keyword index alone on the SciFact test split (document = best chunk)."""
    queries = {
        q["_id"]: q["text"]
        for q in map(json.loads, (DATASET / "queries.jsonl").read_text().splitlines())
    }
    qrels = load_qrels("test")
    space = container.kb_service.space(kb)  # type: ignore[attr-defined]
    scores, latencies = [], []
    for qid, relevant in qrels.items():
        started = time.perf_counter()
        hits = await container.vector_store.search_keyword(space, tenant, kb.id, queries[qid], 100)  # type: ignore[attr-defined]
        latencies.append((time.perf_counter() - started) * 1000)
        chunks = await loader(container.database, tenant, kb.id, [h.chunk_id for h in hits])  # type: ignore[operator,attr-defined]
        ranked: list[str] = []
        for hit in hits:
            name = chunks[hit.chunk_id].document if hit.chunk_id in chunks else None
            if name and name not in ranked:
                ranked.append(name)
        scores.append(ndcg_at_10(ranked, relevant))
    latencies.sort()
    p50, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95)]
    print(
        f"keyword nDCG@10  {sum(scores) / len(scores):.4f} on {len(scores)} test queries "
        f"(p50 {p50:.1f} ms, p95 {p95:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default=str(DATASET / "corpus.jsonl"))
    parser.add_argument("--limit", type=int, default=0, help="only the first N documents")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--data-dir", help="keep the ingested KB here (bench/query.py can reuse it)"
    )
    parser.add_argument(
        "--keyword-only", action="store_true", help="skip embeddings; report keyword quality"
    )
    args = parser.parse_args()
    corpus = Path(args.corpus).read_bytes()
    if args.limit:
        corpus = b"\n".join(corpus.splitlines()[: args.limit]) + b"\n"
    args.corpus_bytes = corpus
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
