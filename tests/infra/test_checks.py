"""cdk-nag (AWS Solutions) and cfn-lint over the synthesized stacks."""

from __future__ import annotations

import json

import pytest

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra

LINT_REGIONS = ["eu-west-1", "us-east-1"]
# cfn-lint checks that are off, each with its reason.
IGNORED_LINT_CHECKS: dict[str, str] = {
    "W3005": "CDK adds an explicit DependsOn on a resource's role (and its default policy) "
    "beside the GetAtt of the role: redundant, harmless, and needed for the policy part.",
}


def _nag_errors(synth: Synthesized) -> list[str]:
    from aws_cdk.assertions import Annotations, Match

    errors = Annotations.from_stack(synth.stack).find_error(
        "*", Match.string_like_regexp("AwsSolutions-.*")
    )
    return [f"{e.id}: {e.entry.data}" for e in errors]


def test_cdk_nag_reports_no_unsuppressed_errors_dev(dev: Synthesized) -> None:
    assert _nag_errors(dev) == []


def test_cdk_nag_reports_no_unsuppressed_errors_prod(prod: Synthesized) -> None:
    assert _nag_errors(prod) == []


def test_every_nag_suppression_has_a_reason(dev: Synthesized) -> None:
    for resource in dev.raw["Resources"].values():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            assert len(rule["reason"]) >= 40, rule


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_cfn_lint_passes(stage: str, request: pytest.FixtureRequest) -> None:
    from cfnlint.api import ManualArgs, lint

    synth: Synthesized = request.getfixturevalue(stage)
    matches = lint(
        json.dumps(synth.raw),
        config=ManualArgs(regions=LINT_REGIONS, ignore_checks=list(IGNORED_LINT_CHECKS)),
    )
    assert [str(m) for m in matches] == []
