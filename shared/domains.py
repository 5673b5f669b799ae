"""Quarry's domain functions and what each one reaches in the cloud.

One map serves both sides: the CDK app grants each function exactly these capabilities (IAM
grants, the secret ARNs in its environment), and the ``aws`` profile's start-up checks look only
at the settings of the capabilities the function's ``QUARRY_DOMAIN`` has.
"""

from __future__ import annotations

from typing import Literal, get_args

Domain = Literal["query", "workflows", "kb_admin", "auth", "ingestion", "tuning"]
Capability = Literal[
    "db",  # Aurora PostgreSQL (its secret, or IAM database authentication)
    "cache",  # ElastiCache Redis (its secret)
    "vectors",  # Milvus / Zilliz (its secret)
    "models",  # the GPU endpoint on SageMaker
    "documents",  # the documents bucket
    "events",  # the EventBridge bus
    "sagas",  # starting the ingestion saga on Step Functions
    "jwt",  # the token signing secret and the API key pepper (a secret each)
    "provider_secrets",  # tenants' provider secrets, envelope-encrypted with a KMS key
]

DOMAINS: tuple[Domain, ...] = get_args(Domain)
CAPABILITIES: tuple[Capability, ...] = get_args(Capability)

DOMAIN_CAPABILITIES: dict[Domain, frozenset[Capability]] = {
    "query": frozenset({"db", "cache", "vectors", "models"}),
    "workflows": frozenset({"db", "cache", "vectors", "models", "events"}),
    "kb_admin": frozenset({"db", "cache", "vectors", "documents", "events", "sagas"}),
    "auth": frozenset({"db", "cache", "jwt", "provider_secrets"}),
    "ingestion": frozenset({"db", "cache", "vectors", "models", "documents", "events", "sagas"}),
    "tuning": frozenset({"db", "cache", "events"}),
}
