"""Extractive answers cite every sentence; Bedrock answers through Converse (Stubber)."""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.stub import Stubber

from shared.adapters.bedrock_answer_generator import BedrockAnswerGenerator
from shared.db.kb_repository import ChunkHit
from shared.errors import DependencyUnavailable
from shared.query.answer import extractive_answer, generated_answer
from shared.query.retrieval import Hit

pytestmark = pytest.mark.unit


def hit(document: str, text: str, page: int | None = None) -> Hit:
    return Hit(ChunkHit(uuid.uuid4(), uuid.uuid4(), document, text, page, None, 0), 1.0)


HITS = [
    hit("hotels.md", "The hotel budget in Zurich is 240 francs. Breakfast is included.", 2),
    hit("flights.md", "Economy class is booked for short flights. Business class needs approval."),
    hit("misc.md", "Parking is free on weekends."),
]


def test_extractive_answer_cites_each_sentence() -> None:
    answer = extractive_answer("What is the hotel budget in Zurich?", HITS)
    assert answer.text.startswith("The hotel budget in Zurich is 240 francs. [1]")
    assert answer.citations[0].document == "hotels.md"
    assert answer.citations[0].page == 2
    sentences = [s for s in answer.text.split("]") if s.strip()]
    assert all("[" in s for s in sentences)  # every sentence ends with a citation
    assert {c.number for c in answer.citations} == set(range(1, len(answer.citations) + 1))


def test_extractive_answer_without_hits_is_empty() -> None:
    assert extractive_answer("anything", []).text == ""


def stubbed_generator(text: str | None) -> tuple[BedrockAnswerGenerator, Stubber]:
    client = boto3.client(
        "bedrock-runtime",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    if text is None:
        stubber.add_client_error("converse", "ThrottlingException", "slow down")
    else:
        stubber.add_response(
            "converse",
            {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 100, "outputTokens": 20, "totalTokens": 120},
                "metrics": {"latencyMs": 350},
            },
        )
    stubber.activate()
    return BedrockAnswerGenerator("anthropic.claude-3-haiku", client=client), stubber


def test_bedrock_answer_keeps_only_real_citations_renumbered() -> None:
    generator, stubber = stubbed_generator(
        "Zurich hotels cost up to 240 francs [1]. Flights are economy [2]. Nonsense [9]."
    )
    answer = generated_answer(generator, "budget?", HITS)
    stubber.assert_no_pending_responses()
    assert (
        answer.text
        == "Zurich hotels cost up to 240 francs [1]. Flights are economy [2]. Nonsense ."
    )
    assert [c.document for c in answer.citations] == ["hotels.md", "flights.md"]


def test_bedrock_errors_become_dependency_unavailable() -> None:
    generator, _ = stubbed_generator(None)
    with pytest.raises(DependencyUnavailable) as caught:
        generator.generate("q", ["p"])
    assert caught.value.code == "llm_unavailable"
