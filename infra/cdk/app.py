"""The CDK app's entry point: ``python infra/cdk/app.py [-c stage=prod] [-c key=value ...]``
synthesizes to ``infra/cdk/cdk.out`` and exits 1 on an unsuppressed cdk-nag error; the CDK CLI
runs it through ``infra/cdk/cdk.json`` (``cd infra/cdk && cdk deploy -c stage=prod``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quarry_infra.application import build_app, cli_environment

OUTDIR = Path(__file__).resolve().parent / "cdk.out"


def parse_context(argv: list[str]) -> dict[str, str]:
    """``-c key=value`` / ``--context key=value`` pairs, as the CDK CLI takes them."""
    context: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        if arg not in ("-c", "--context"):
            raise SystemExit(f"unknown argument {arg!r}; use -c key=value")
        key, sep, value = next(args, "").partition("=")
        if not sep or not key:
            raise SystemExit("-c needs key=value")
        context[key] = value
    return context


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    # Under the CDK CLI, CDK_OUTDIR and CDK_CONTEXT_JSON are set and the App reads them.
    outdir = os.environ.get("CDK_OUTDIR") or str(OUTDIR)
    app, stack = build_app(parse_context(argv), outdir=outdir, env=cli_environment())
    assembly = app.synth()
    seconds = time.perf_counter() - started
    print(f"synthesized {stack.stack_name} to {outdir} in {seconds:.1f} s", file=sys.stderr)
    # The CDK CLI refuses a stack with error annotations (cdk-nag's findings); so does this.
    messages = assembly.get_stack_artifact(stack.artifact_id).messages
    errors = [m for m in messages if m.level.name == "ERROR"]
    for error in errors:
        print(f"[error] {error.id}: {error.entry.data}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
