from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from shared.errors import InvalidInput
from shared.ingestion.s3_events import (
    ObjectChange,
    object_key,
    parse_s3_event,
    split_object_key,
)
from tests.events import load_event

pytestmark = pytest.mark.unit

BUCKET = "quarry-documents-123456789012-eu-west-1"
TENANT = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
KB = "0b8a6f52-3d1e-4c2a-9f7b-5e4d3c2b1a09"
NAME = "policies/Travel policy Zürich v2+final.pdf"
KEY = f"tenants/{TENANT}/kbs/{KB}/{NAME}"

CREATED = ObjectChange(
    kind="created",
    bucket=BUCKET,
    key=KEY,
    tenant=TENANT,
    kb=KB,
    name=NAME,
    size=184320,
    etag="9b2cf535f27731c974343645a3985328",
)
REMOVED = ObjectChange(
    kind="removed", bucket=BUCKET, key=KEY, tenant=TENANT, kb=KB, name=NAME, size=None, etag=None
)


@pytest.mark.parametrize(
    ("event_name", "expected"),
    [
        ("s3_object_created", CREATED),
        ("s3_object_removed", REMOVED),
        ("eventbridge_s3_object_created", CREATED),
        ("eventbridge_s3_object_deleted", REMOVED),
    ],
)
def test_stored_events_parse_to_the_same_change(event_name: str, expected: ObjectChange) -> None:
    assert parse_s3_event(load_event(event_name)) == [expected]


def test_notification_keys_are_form_decoded() -> None:
    # '+' is a space and '%2B' a real plus: plain percent-decoding would get both wrong.
    raw = load_event("s3_object_created")["Records"][0]["s3"]["object"]["key"]
    assert "+" in raw
    assert "%C3%BC" in raw
    [change] = parse_s3_event(load_event("s3_object_created"))
    assert change.name.endswith("Travel policy Zürich v2+final.pdf")


def test_eventbridge_keys_are_taken_as_they_are() -> None:
    event = load_event("eventbridge_s3_object_created")
    event["detail"]["object"]["key"] = f"tenants/{TENANT}/kbs/{KB}/100%25 done.txt"
    [change] = parse_s3_event(event)
    assert change.name == "100%25 done.txt"


def test_every_record_of_a_batch_is_read() -> None:
    event = load_event("s3_object_created")
    second = copy.deepcopy(event["Records"][0])
    second["eventName"] = "ObjectRemoved:DeleteMarkerCreated"
    second["s3"]["object"]["key"] = f"tenants/{TENANT}/kbs/{KB}/notes.md"
    event["Records"].append(second)
    changes = parse_s3_event(event)
    assert [(c.kind, c.name) for c in changes] == [("created", NAME), ("removed", "notes.md")]


@pytest.mark.parametrize(
    "key",
    [
        "exports/2026-11/report.csv",
        f"tenants/{TENANT}/kbs/{KB}/",
        f"tenants/{TENANT}/{KB}/file.txt",
        f"tenants/{TENANT}/kbs/{KB}/a/../b.txt",
        f"tenants//kbs/{KB}/file.txt",
    ],
)
def test_keys_outside_the_layout_are_skipped_with_a_warning(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    event = load_event("eventbridge_s3_object_created")
    event["detail"]["object"]["key"] = key
    with caplog.at_level(logging.WARNING, logger="shared.ingestion.s3_events"):
        assert parse_s3_event(event) == []
    assert "skipping S3 object" in caplog.text


def test_a_stray_record_does_not_hide_the_others() -> None:
    event = load_event("s3_object_removed")
    stray = copy.deepcopy(event["Records"][0])
    stray["s3"]["object"]["key"] = "exports/report.csv"
    event["Records"].insert(0, stray)
    assert parse_s3_event(event) == [REMOVED]


@pytest.mark.parametrize("event_name", ["ObjectRestore:Completed", "ObjectTagging:Put"])
def test_other_notification_events_are_ignored(event_name: str) -> None:
    event = load_event("s3_object_created")
    event["Records"][0]["eventName"] = event_name
    assert parse_s3_event(event) == []


def test_other_eventbridge_detail_types_are_ignored() -> None:
    event = load_event("eventbridge_s3_object_created")
    event["detail-type"] = "Object Tags Added"
    assert parse_s3_event(event) == []


def test_the_s3_test_event_has_no_changes() -> None:
    event = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-24T09:00:00.000Z",
        "Bucket": BUCKET,
        "RequestId": "5T3D1Y8X4N7Q2W9E",
        "HostId": "Wf8mUdT0Kj3r8yQp1FjG6b0xV4nHq2sLk9cZ7aE5oR3tY1uI8pD6wM0vB4n",
    }
    assert parse_s3_event(event) == []


def _sqs_record(event: dict[str, Any]) -> dict[str, Any]:
    event["Records"][0]["eventSource"] = "aws:sqs"
    return event


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"},
        _sqs_record(load_event("s3_object_created")),
        {"Records": ["not a record"]},
        {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]},
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {}}},
    ],
)
def test_unknown_or_broken_shapes_are_rejected(event: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_s3_event(event)
    assert caught.value.code == "unsupported_event"


def test_object_key_is_the_inverse_of_split() -> None:
    key = object_key(TENANT, KB, NAME)
    assert key == KEY
    assert split_object_key(key) == (TENANT, KB, NAME)


@pytest.mark.parametrize(
    ("tenant", "kb", "name"),
    [
        ("", KB, "a.txt"),
        (TENANT, "..", "a.txt"),
        ("t/1", KB, "a.txt"),
        (TENANT, KB, ""),
        (TENANT, KB, "/etc/passwd"),
        (TENANT, KB, "../../other/a.txt"),
        (TENANT, KB, "dir/"),
        (TENANT, KB, "back\\slash.txt"),
        (TENANT, KB, "x" * 1100),
    ],
)
def test_object_key_rejects_bad_parts(tenant: str, kb: str, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        object_key(tenant, kb, name)
    assert caught.value.code == "invalid_key"
