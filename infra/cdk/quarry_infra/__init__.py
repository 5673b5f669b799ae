"""Quarry's infrastructure as a CDK app: ``build_app`` makes the app with its one stack and the
cdk-nag AWS Solutions checks; ``infra/cdk/app.py`` synthesizes it."""

from __future__ import annotations

import os

# jsii warns on every start that Node 20 is past its end of life; it still works.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
