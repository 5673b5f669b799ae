"""CDK synth fixtures. The app is synthesized once per session and stage (starting jsii and
synthesizing take most of the infra tests' time), offline, without Docker and without staging
assets (the same way ``template.yaml`` is made).

Needs the ``cdk`` extra and Node.js; without them the infra tests skip, except under CI=true,
where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra" / "cdk"
IN_CI = os.environ.get("CI", "").lower() == "true"
if str(INFRA_DIR) not in sys.path:  # quarry_infra, synth_template
    sys.path.insert(0, str(INFRA_DIR))


def _missing() -> str | None:
    if importlib.util.find_spec("aws_cdk") is None or importlib.util.find_spec("cdk_nag") is None:
        return "the cdk extra is not installed (pip install -e '.[cdk]')"
    if shutil.which("node") is None:
        return "Node.js is not installed (jsii runs aws-cdk-lib on it)"
    return None


@dataclass(frozen=True)
class Synthesized:
    stack: Any  # quarry_infra.stack.QuarryStack
    template: Any  # aws_cdk.assertions.Template
    raw: dict[str, Any]

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.raw["Resources"].items()
            if resource["Type"] == resource_type
        }


def _synthesize(stage: str, outdir: Path) -> Synthesized:
    reason = _missing()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: the infra tests must run)")
        pytest.skip(reason)
    from aws_cdk.assertions import Template
    from quarry_infra.application import SAM_CONTEXT, build_app, stack_name

    app, stack = build_app({**SAM_CONTEXT, "stage": stage}, outdir=str(outdir))
    raw = app.synth().get_stack_by_name(stack_name(stage)).template
    return Synthesized(stack=stack, template=Template.from_json(raw), raw=raw)


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize("dev", tmp_path_factory.mktemp("cdk-dev"))


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize("prod", tmp_path_factory.mktemp("cdk-prod"))
