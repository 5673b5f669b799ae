"""References, templates and the sandbox."""

from __future__ import annotations

import pytest

from shared.workflows.expressions import (
    ExpressionError,
    condition,
    jmespath_usage,
    render,
    resolve,
    template_usage,
)

pytestmark = pytest.mark.unit

CONTEXT = {
    "input": {"n": 3, "name": "Ada", "tags": ["a", "b"]},
    "nodes": {"search": {"status": "succeeded", "output": {"hits": [{"text": "x"}]}}},
}


def test_references_keep_their_type_and_templates_render() -> None:
    value = {
        "count": "$.input.n",
        "first": "$.nodes.search.output.hits[0].text",
        "typed": "{{ input.n + 1 }}",
        "text": "Hello {{ input.name }}, {{ input.tags | join(',') }}",
        "literal": "plain",
        "list": ["$.input.tags", 5],
    }
    assert resolve(value, CONTEXT, keep_secret_templates=False) == {
        "count": 3,
        "first": "x",
        "typed": 4,
        "text": "Hello Ada, a,b",
        "literal": "plain",
        "list": [["a", "b"], 5],
    }


def test_secret_templates_stay_unrendered_when_asked() -> None:
    header = "Bearer {{ secrets.token }}"
    assert resolve({"h": header}, CONTEXT, keep_secret_templates=True) == {"h": header}


def test_usage_names_roots_nodes_and_secrets() -> None:
    usage = template_usage("{{ nodes.a.output }} {{ nodes['b'].x }} {{ secrets.k }} {{ input }}")
    assert (usage.nodes, usage.secrets) == ({"a", "b"}, {"k"})
    assert usage.roots == {"nodes", "secrets", "input"}
    filtered = jmespath_usage("nodes.a.output[?x == `1`] | length(@)")
    assert (filtered.roots, filtered.nodes) == ({"nodes"}, {"a"})


def test_conditions_use_jmespath_truthiness() -> None:
    assert condition("input.tags", CONTEXT)
    assert not condition("input.missing", CONTEXT)
    assert not condition("`[]`", CONTEXT)
    assert condition("input.n > `2`", CONTEXT)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 1000000 }}",
        "{{ 2 ** 1000 }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ input.tags.append('c') }}",
        "{{ input.missing.deeper }}",
    ],
)
def test_the_sandbox_refuses(template: str) -> None:
    with pytest.raises(ExpressionError):
        render(template, CONTEXT)
    assert CONTEXT["input"]["tags"] == ["a", "b"]  # type: ignore[index]
