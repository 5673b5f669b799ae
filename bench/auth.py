"""What authentication costs a request, on the local app (in-process ASGI, embedded defaults).

    .venv/bin/python bench/auth.py [--requests 2000] [--redis redis://127.0.0.1:6379/14]

Per route, in the same run: the unauthenticated liveness route (the baseline); ``GET
/v1/stats/cache``, which reads no database, with an access token and with an API key (so the
difference to the baseline is authentication and the rate limit; the key adds its lookup);
``GET /v1/auth/me`` and ``GET /v1/kbs`` (plus one tenant-scoped query); and one sign-in
(argon2id at the configured cost). Prints p50/p95 in ms and the ratio to the baseline;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PASSWORD = "a long benchmark passphrase 42"  # noqa: S105 (a throwaway account)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(client: Any, method: str, path: str, n: int, **kwargs: Any) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        response = await client.request(method, path, **kwargs)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text}")
    return samples


async def main(args: argparse.Namespace) -> None:
    import httpx

    from functions.local_app import create_local_app
    from shared.settings import Settings

    with tempfile.TemporaryDirectory() as data_dir:
        overrides: dict[str, Any] = {
            "data_dir": Path(data_dir),
            # High enough that the benchmark itself is never throttled.
            "auth": {"default_rate_limit": 10 * args.requests + 100},
        }
        if args.redis:
            overrides["cache"] = {"redis_url": args.redis}
        app = create_local_app(Settings(_env_file=None, **overrides))  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
        ):
            await client.post(
                "/v1/auth/register",
                json={"email": "b@example.com", "password": PASSWORD, "tenant_name": "b"},
            )
            login = {"email": "b@example.com", "password": PASSWORD}
            logins = await timed(client, "POST", "/v1/auth/token", 5, json=login)
            token = (await client.post("/v1/auth/token", json=login)).json()["access_token"]
            bearer = {"Authorization": f"Bearer {token}"}
            key = (
                await client.post("/v1/api-keys", json={"name": "bench"}, headers=bearer)
            ).json()["key"]
            await client.post("/v1/kbs", json={"name": "bench"}, headers=bearer)

            n = args.requests
            runs = {
                "GET /health (no auth, baseline)": await timed(client, "GET", "/health", n),
                "GET /v1/stats/cache, access token": await timed(
                    client, "GET", "/v1/stats/cache", n, headers=bearer
                ),
                "GET /v1/stats/cache, API key": await timed(
                    client, "GET", "/v1/stats/cache", n, headers={"X-API-Key": key}
                ),
                "GET /v1/auth/me, access token": await timed(
                    client, "GET", "/v1/auth/me", n, headers=bearer
                ),
                "GET /v1/auth/me, API key": await timed(
                    client, "GET", "/v1/auth/me", n, headers={"X-API-Key": key}
                ),
                "GET /v1/kbs, access token": await timed(
                    client, "GET", "/v1/kbs", n, headers=bearer
                ),
            }
    limiter = "Redis" if args.redis else "in-process"
    print(f"{args.requests} requests per route, rate limiter {limiter}, SQLite")
    baseline = statistics.median(next(iter(runs.values())))
    print(f"{'route':44} {'p50 ms':>8} {'p95 ms':>8} {'p50 / baseline':>15}")
    for name, samples in runs.items():
        p50 = statistics.median(samples)
        print(f"{name:44} {p50:8.2f} {percentile(samples, 0.95):8.2f} {p50 / baseline:15.1f}")
    print(f"sign-in (argon2id, default cost): p50 {statistics.median(logins):.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--redis", default=None, help="use Redis for the rate limiter")
    asyncio.run(main(parser.parse_args()))
