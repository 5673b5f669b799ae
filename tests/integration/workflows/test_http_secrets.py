"""An HTTP node's secret reaches the request and nothing else: not the node run's input or
output, not the run's context, not the logs."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from shared.workflows.safe_http import HttpPolicy, SafeHttpClient
from tests.integration.workflows.conftest import Harness

pytestmark = pytest.mark.integration

SECRET = "tok-0123456789abcdef"


class Secrets:
    async def get(self, tenant_id: uuid.UUID, name: str) -> str:
        assert name == "crm_token"
        return SECRET


async def test_secret_is_sent_but_never_stored_or_logged(
    make_harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(201, json={"id": "c-1"})

    async def resolver(host: str, port: int) -> Sequence[str]:
        return ["93.184.216.34"]

    client = SafeHttpClient(
        HttpPolicy(timeout_s=5, max_response_bytes=10_000, max_redirects=0),
        resolver=resolver,
        transport=httpx.MockTransport(handle),
    )
    harness: Harness = await make_harness(http_client=client, secrets=Secrets())
    headers = {"authorization": "Bearer {{ secrets.crm_token }}"}
    source = {
        "name": "crm",
        "nodes": [
            {
                "id": "create",
                "type": "http",
                "method": "POST",
                "url": "https://crm.example.com/contacts",
                "headers": headers,
                "json": {"name": "Ada"},
                "compensation": {
                    "type": "http",
                    "method": "DELETE",
                    "url": "https://crm.example.com/contacts/{{ nodes.create.output.body.id }}",
                    "headers": headers,
                },
            },
            {"id": "boom", "type": "transform", "template": "{{ nodes.create.output.nope.x }}"},
        ],
    }
    caplog.set_level(logging.DEBUG)
    await harness.service.create(harness.owner, source)
    run = await harness.service.start_run(harness.owner, "crm", {}, wait_s=None)
    assert run.status == "compensated"
    assert [(r.method, r.url.path, r.headers["authorization"]) for r in sent] == [
        ("POST", "/contacts", f"Bearer {SECRET}"),
        ("DELETE", "/contacts/c-1", f"Bearer {SECRET}"),
    ]
    details = await harness.service.get_run(harness.owner, run.id)
    stored = json.dumps(
        [{"input": n.input, "output": n.output, "error": n.error_message} for n in details.nodes]
        + [run.context, run.output, run.error_message],
        default=str,
    )
    assert SECRET not in stored
    assert "{{ secrets.crm_token }}" in stored  # the template is what was kept
    assert SECRET not in caplog.text
