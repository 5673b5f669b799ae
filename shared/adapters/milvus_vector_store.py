"""Milvus vector store: a Milvus Lite file locally, a Milvus server or Zilliz in the cloud.

The same pymilvus client code serves both; only the URI differs.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any


class MilvusVectorStore:
    def __init__(self, uri: str, *, token: str | None = None, collection_prefix: str = "quarry"):
        self.uri = uri
        self._token = token
        self.collection_prefix = collection_prefix
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """Connects on first use: Milvus Lite starts a local server process (~1-2 s)."""
        with self._lock:
            if self._client is None:
                with warnings.catch_warnings():
                    # milvus-lite 2.5 imports pkg_resources, which warns on import.
                    warnings.simplefilter("ignore", UserWarning)
                    from pymilvus import MilvusClient

                self._client = MilvusClient(uri=self.uri, token=self._token or "")
            return self._client

    async def ping(self) -> None:
        await asyncio.to_thread(lambda: self.client.list_collections())

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
