"""``python -m gpu_endpoint [serve]``: run the endpoint with uvicorn.

SageMaker starts a container as ``<image> serve``, so ``serve`` is accepted (and ignored).
"""

from __future__ import annotations

import os
import sys


def serve(host: str | None = None, port: int | None = None) -> None:
    """Run until stopped; ``host`` and ``port`` override the settings (``quarry gpu-endpoint``)."""
    # Belt and braces: every model comes from a local directory, so the hub must never be asked.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    import uvicorn

    from gpu_endpoint.app import create_app
    from gpu_endpoint.settings import GpuEndpointSettings
    from shared.observability.logging import configure_logging

    settings = GpuEndpointSettings()
    configure_logging(settings.log_level, service="quarry-gpu-endpoint")
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["serve"]):
        raise SystemExit("usage: python -m gpu_endpoint [serve]")
    serve()


if __name__ == "__main__":
    main()
