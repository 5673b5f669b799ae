"""The README's first command, end to end: `quarry serve` on embedded defaults."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_quarry_serve_answers_ready(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "QUARRY_DATA_DIR": str(tmp_path / "data")}
    log_path = tmp_path / "server.log"
    log_file = log_path.open("wb")
    server = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "functions.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
                break
            except httpx.TransportError:
                if server.poll() is not None:
                    break
                time.sleep(0.5)
        assert response is not None, log_path.read_text(errors="replace")[-3000:]
        assert response.status_code == 200, response.text
        assert all(c["status"] == "ok" for c in response.json()["components"].values())
        assert (tmp_path / "data" / "quarry.db").exists()
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'route="/health/ready"' in metrics
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()
