"""Domain events, the in-process bus, and EventBridge (on moto, delivering to an SQS queue)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from shared.adapters.eventbridge_event_bus import EventBridgeEventBus
from shared.adapters.in_process_event_bus import InProcessEventBus
from shared.errors import DependencyUnavailable, InvalidInput
from shared.ports.event_bus import DomainEvent, EventBus
from tests.fixtures.aws import REGION, mocked_aws

pytestmark = pytest.mark.integration


def _event(event_type: str = "document.ready", **overrides: Any) -> DomainEvent:
    values: dict[str, Any] = {
        "type": event_type,
        "tenant_id": "t1",
        "kb_id": "kb1",
        "document_id": "doc1",
        "detail": {"chunks": 12, "name": "Travel policy Zürich.pdf"},
    }
    values.update(overrides)
    return DomainEvent(**values)


# --- DomainEvent -----------------------------------------------------------------------------


def test_an_event_round_trips_through_json() -> None:
    event = _event()
    again = DomainEvent.from_dict(json.loads(json.dumps(event.to_dict())))
    assert again == event
    assert event.occurred_at.tzinfo is UTC
    assert str(uuid.UUID(event.id)) == event.id


def test_events_get_fresh_ids_and_utc_times() -> None:
    first, second = _event(), _event()
    assert first.id != second.id
    local = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    assert _event(occurred_at=local).occurred_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "build",
    [
        lambda: _event("document.exploded"),
        lambda: _event(occurred_at=datetime(2026, 11, 24, 10, 0)),
        lambda: DomainEvent.from_dict({"type": "kb.changed"}),
        lambda: DomainEvent.from_dict({**_event().to_dict(), "occurred_at": "yesterday"}),
        lambda: DomainEvent.from_dict({**_event().to_dict(), "detail": [1, 2]}),
    ],
)
def test_bad_events_are_rejected(build: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        build()
    assert caught.value.code == "invalid_event"


# --- InProcessEventBus -----------------------------------------------------------------------


async def test_subscribers_get_the_events_they_asked_for() -> None:
    bus = InProcessEventBus()
    seen: list[tuple[str, str]] = []

    async def on_ready(event: DomainEvent) -> None:
        seen.append(("ready", event.type))

    bus.subscribe("document.ready", on_ready)
    bus.subscribe("*", lambda event: seen.append(("all", event.type)))
    bus.subscribe("kb.changed", lambda event: seen.append(("kb", event.type)))

    await bus.publish(_event("document.ready"))
    await bus.publish(_event("document.deleted"))
    assert seen == [
        ("ready", "document.ready"),
        ("all", "document.ready"),
        ("all", "document.deleted"),
    ]


async def test_a_failing_subscriber_stops_neither_the_others_nor_the_publisher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = InProcessEventBus()
    seen: list[str] = []

    def broken_sync(event: DomainEvent) -> None:
        raise RuntimeError("sync subscriber broke")

    async def broken_async(event: DomainEvent) -> None:
        raise RuntimeError("async subscriber broke")

    bus.subscribe("*", broken_sync)
    bus.subscribe("document.failed", broken_async)
    bus.subscribe("document.failed", lambda event: seen.append(event.id))

    event = _event("document.failed")
    with caplog.at_level(logging.ERROR, logger="shared.adapters.in_process_event_bus"):
        await bus.publish(event)
    assert seen == [event.id]
    failures = [r for r in caplog.records if r.message == "event subscriber failed"]
    assert len(failures) == 2
    assert {r.exc_info[1].args[0] for r in failures if r.exc_info and r.exc_info[1]} == {
        "sync subscriber broke",
        "async subscriber broke",
    }


async def test_unsubscribe_stops_delivery() -> None:
    bus = InProcessEventBus()
    seen: list[str] = []
    unsubscribe = bus.subscribe("*", lambda event: seen.append(event.type))
    await bus.publish(_event("kb.changed", document_id=None))
    unsubscribe()
    unsubscribe()  # twice is harmless
    await bus.publish(_event("kb.changed", document_id=None))
    assert seen == ["kb.changed"]


def test_subscribing_to_an_unknown_type_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        InProcessEventBus().subscribe("document.readdy", lambda event: None)


# --- EventBridgeEventBus ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    """moto EventBridge and SQS with fake credentials; clients built once (that is slow)."""
    with mocked_aws():
        yield {
            "events": boto3.client("events", region_name=REGION),
            "sqs": boto3.client("sqs", region_name=REGION),
        }


@pytest.fixture
def routed_bus(aws: dict[str, Any]) -> tuple[str, str]:
    """A fresh bus whose document.* events go to a fresh SQS queue: (bus name, queue URL)."""
    events, sqs = aws["events"], aws["sqs"]
    suffix = uuid.uuid4().hex[:8]
    bus_name = f"quarry-{suffix}"
    events.create_event_bus(Name=bus_name)
    queue_url = sqs.create_queue(QueueName=f"quarry-events-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name="documents",
        EventBusName=bus_name,
        EventPattern=json.dumps(
            {"source": ["quarry"], "detail-type": ["document.ready", "document.failed"]}
        ),
    )
    events.put_targets(
        Rule="documents", EventBusName=bus_name, Targets=[{"Id": "queue", "Arn": queue_arn}]
    )
    return bus_name, queue_url


def _received(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


async def test_eventbridge_delivers_the_event_to_a_rule_target(
    aws: dict[str, Any], routed_bus: tuple[str, str]
) -> None:
    bus_name, queue_url = routed_bus
    bus: EventBus = EventBridgeEventBus(bus_name, client=aws["events"])
    event = _event("document.ready")
    await bus.publish(event)
    await bus.publish(_event("kb.changed"))  # no rule matches it

    [delivered] = _received(aws["sqs"], queue_url)
    assert delivered["source"] == "quarry"
    assert delivered["detail-type"] == "document.ready"
    assert delivered["detail"]["detail"] == {"chunks": 12, "name": "Travel policy Zürich.pdf"}
    assert DomainEvent.from_dict(delivered["detail"]) == event


async def test_eventbridge_builds_its_own_client_when_none_is_given(
    aws: dict[str, Any], routed_bus: tuple[str, str]
) -> None:
    bus_name, queue_url = routed_bus
    await EventBridgeEventBus(bus_name, source="quarry", region=REGION).publish(_event())
    assert len(_received(aws["sqs"], queue_url)) == 1


async def test_a_failed_entry_is_dependency_unavailable(aws: dict[str, Any]) -> None:
    client = aws["events"]
    with Stubber(client) as stubber:
        stubber.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}],
            },
        )
        with pytest.raises(DependencyUnavailable) as caught:
            await EventBridgeEventBus("quarry", client=client).publish(_event())
        stubber.assert_no_pending_responses()
    assert caught.value.code == "event_bus_unavailable"
    assert caught.value.details["reason"] == "InternalFailure"


async def test_an_sdk_error_is_dependency_unavailable(aws: dict[str, Any]) -> None:
    client = aws["events"]
    with Stubber(client) as stubber:
        stubber.add_client_error("put_events", service_error_code="AccessDeniedException")
        with pytest.raises(DependencyUnavailable) as caught:
            await EventBridgeEventBus("quarry", client=client).publish(_event())
    assert caught.value.code == "event_bus_unavailable"
    assert caught.value.details["reason"] == "AccessDeniedException"
