"""cdk-nag suppressions, each with its reason, kept beside the resource they concern."""

from __future__ import annotations

from collections.abc import Sequence

from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct

AppliesTo = str | RegexAppliesTo


def suppress(
    construct: IConstruct,
    rule: str,
    reason: str,
    *,
    applies_to: Sequence[AppliesTo] | None = None,
    children: bool = True,
) -> None:
    """Suppresses ``rule`` (``AwsSolutions-IAM5``) on ``construct`` and, by default, on what it
    contains. ``applies_to`` narrows an IAM finding to the listed actions/resources (exact, or
    ``matching(pattern)``)."""
    suppression = NagPackSuppression(
        id=rule, reason=reason, applies_to=list(applies_to) if applies_to else None
    )
    NagSuppressions.add_resource_suppressions(construct, [suppression], apply_to_children=children)


def matching(pattern: str) -> RegexAppliesTo:
    """An ``applies_to`` entry that matches findings by regular expression."""
    return RegexAppliesTo(regex=f"/{pattern}/")
