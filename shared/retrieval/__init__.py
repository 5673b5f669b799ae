"""Retrieval: hybrid (dense + BM25) search over a KB's current chunks."""
