"""Query benchmark on BEIR SciFact: quality (nDCG@10, recall@100) and latency per mode, two
baselines (keyword-only, dense-only), cached latency, and the auto mode mix.

    .venv/bin/python bench/ingest.py --data-dir /tmp/scifact-kb   # once: ingest the corpus
    .venv/bin/python bench/query.py --data-dir /tmp/scifact-kb [--split test|train]

Quality runs each mode with top_k 100 (documents ranked by their best chunk); latency runs
each mode as a user would (its own top_k, answers on), uncached, then again cached.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATASET = REPO.parent / "shared" / "datasets" / "scifact"


def load_split(split: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    queries = {
        q["_id"]: q["text"]
        for q in map(json.loads, (DATASET / "queries.jsonl").read_text().splitlines())
    }
    qrels: dict[str, set[str]] = {}
    for line in (DATASET / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.strip().split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(doc)
    return {q: queries[q] for q in qrels}, qrels


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at_100(ranked: list[str], relevant: set[str]) -> float:
    return len(set(ranked[:100]) & relevant) / len(relevant)


def documents(hits: list[Any]) -> list[str]:
    ranked: list[str] = []
    for name in hits:
        if name not in ranked:
            ranked.append(name)
    return ranked


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def run(args: argparse.Namespace) -> None:
    from shared.container import Container
    from shared.db.kb_repository import load_current_chunks
    from shared.query.service import QueryRequest
    from shared.settings import Settings

    queries, qrels = load_split(args.split)
    if args.limit:
        queries = dict(list(queries.items())[: args.limit])
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=Path(args.data_dir),
        models={"torch_threads": args.threads},
    )
    container = Container(settings)
    tenant = await container.kb_repository.ensure_tenant("bench")
    kb = await container.kb_service.get(tenant, "scifact")
    space = container.kb_service.space(kb)
    container.embedder.embed(["warm up"])
    service = container.query_service

    print(f"SciFact {args.split}: {len(queries)} queries, KB {kb.name} (version {kb.version})")
    print(f"{'config':18} {'nDCG@10':>8} {'R@100':>7}")

    async def baseline(kind: str) -> None:
        scores, recalls = [], []
        for qid, text in queries.items():
            if kind == "keyword":
                found = await container.vector_store.search_keyword(space, tenant, kb.id, text, 200)
            else:
                vector = container.embedder.embed([text])[0]
                found = await container.vector_store.search_dense(space, tenant, kb.id, vector, 200)
            chunks = await load_current_chunks(
                container.database, tenant, kb.id, [f.chunk_id for f in found]
            )
            ranked = documents([chunks[f.chunk_id].document for f in found if f.chunk_id in chunks])
            scores.append(ndcg_at_10(ranked, qrels[qid]))
            recalls.append(recall_at_100(ranked, qrels[qid]))
        ndcg, recall = sum(scores) / len(scores), sum(recalls) / len(recalls)
        print(f"{kind + '-only':18} {ndcg:8.4f} {recall:7.4f}")

    if args.latency_only:
        await latency(service, tenant, kb, queries)
        await container.aclose()
        return
    await baseline("keyword")
    await baseline("dense")

    mix: dict[str, int] = {}
    for mode in ("fast", "balanced", "deep", "auto"):
        scores, recalls = [], []
        for qid, text in queries.items():
            result = await service.query(
                tenant,
                kb.name,
                QueryRequest(text, mode=mode, top_k=100, answer=False, cache=False),  # type: ignore[arg-type]
            )
            ranked = documents([h["document"] for h in result["hits"]])
            scores.append(ndcg_at_10(ranked, qrels[qid]))
            recalls.append(recall_at_100(ranked, qrels[qid]))
            if mode == "auto":
                mix[result["mode"]] = mix.get(result["mode"], 0) + 1
        print(f"{mode:18} {sum(scores) / len(scores):8.4f} {sum(recalls) / len(recalls):7.4f}")
    total = sum(mix.values())
    print(
        "auto mode mix     "
        + ", ".join(f"{m} {100 * n / total:.0f}%" for m, n in sorted(mix.items()))
    )

    if args.variants:
        await plan_variants(container, tenant, kb, queries, qrels)

    await latency(service, tenant, kb, queries)
    await container.aclose()


async def latency(service: Any, tenant: Any, kb: Any, queries: dict[str, str]) -> None:
    from shared.query.service import QueryRequest

    print(f"\n{'latency (ms)':18} {'p50':>8} {'p95':>8}  {'cached p50':>10} {'cached p95':>10}")
    for mode in ("fast", "balanced", "deep"):
        uncached = []
        for text in queries.values():
            started = time.perf_counter()
            request = QueryRequest(text, mode=mode, cache=False)  # type: ignore[arg-type]
            await service.query(tenant, kb.name, request)
            uncached.append((time.perf_counter() - started) * 1000)
        for text in queries.values():  # fill the cache
            await service.query(tenant, kb.name, QueryRequest(text, mode=mode))  # type: ignore[arg-type]
        cached = []
        for text in queries.values():
            started = time.perf_counter()
            result = await service.query(tenant, kb.name, QueryRequest(text, mode=mode))  # type: ignore[arg-type]
            cached.append((time.perf_counter() - started) * 1000)
            assert result["cache"] == "hit"
        print(
            f"{mode:18} {percentile(uncached, 0.5):8.1f} {percentile(uncached, 0.95):8.1f}  "
            f"{percentile(cached, 0.5):10.2f} {percentile(cached, 0.95):10.2f}"
        )


async def plan_variants(
    container: Any, tenant: Any, kb: Any, queries: dict[str, str], qrels: dict[str, set[str]]
) -> None:
    """Retrieval plans beside the shipped ones (quality only): what each stage buys."""
    from shared.query.deadline import Deadline
    from shared.query.retrieval import ModePlan

    variants = {
        "rrf pool 50": ModePlan("fast", 60_000, 100, 50, "rrf"),
        "rrf pool 100": ModePlan("balanced", 60_000, 100, 100, "rrf"),
        "scores pool 100": ModePlan("balanced", 60_000, 100, 100, "scores"),
        "scores pool 200": ModePlan("deep", 60_000, 100, 200, "scores"),
        "rrf 200 + expand": ModePlan("deep", 60_000, 100, 200, "rrf", expand=True),
        "scores 200 + expand": ModePlan("deep", 60_000, 100, 200, "scores", expand=True),
    }
    space = container.kb_service.space(kb)
    for name, plan in variants.items():
        scores, recalls = [], []
        for qid, text in queries.items():
            found = await container.retriever.retrieve(
                space, tenant, kb.id, text, plan, Deadline(60_000)
            )
            ranked = documents([h.chunk.document for h in found.hits])
            scores.append(ndcg_at_10(ranked, qrels[qid]))
            recalls.append(recall_at_100(ranked, qrels[qid]))
        ndcg, recall = sum(scores) / len(scores), sum(recalls) / len(recalls)
        print(f"  {name:22} {ndcg:8.4f} {recall:7.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True, help="a data dir made by bench/ingest.py")
    parser.add_argument("--split", default="test", choices=["test", "train"])
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", action="store_true", help="also compare retrieval plans")
    parser.add_argument("--latency-only", action="store_true", help="skip the quality runs")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
