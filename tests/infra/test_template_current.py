"""``template.yaml`` (for ``sam local``) must match the CDK app; ``make template`` rewrites it."""

from __future__ import annotations

import difflib

import pytest

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra


def test_template_yaml_is_current(dev: Synthesized) -> None:
    from synth_template import TEMPLATE_PATH, render

    expected = render(dev.raw)
    current = TEMPLATE_PATH.read_text() if TEMPLATE_PATH.exists() else ""
    if current != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "template.yaml",
                    "synthesized",
                )
            )[:60]
        )
        pytest.fail(f"template.yaml is stale: run `make template`\n{diff}")


@pytest.mark.usefixtures("dev")
def test_template_yaml_points_sam_at_the_sources() -> None:
    from synth_template import TEMPLATE_PATH

    text = TEMPLATE_PATH.read_text()
    assert "aws:asset:path: layers/build\n" in text
    assert "aws:asset:path: .\n" in text  # the functions' code: functions/ + shared/
    assert "/work/" not in text
    assert "/home/" not in text
