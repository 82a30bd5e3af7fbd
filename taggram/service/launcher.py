"""Run ``taggram serve`` in a child process on 127.0.0.1 and wait until it is ready.

Used by the end-to-end tests and the benchmarks, and handy in scripts and notebooks that want a
real server for a while: ``with running_server(repository, log_dir) as server: ... server.url``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server: its process, base URL and the file its output goes to."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        """Everything the server has printed so far."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_server(
    repository: Path,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 180.0,
) -> Iterator[Server]:
    """Run ``python -m taggram serve`` until the block exits; settings come from TAGGRAM_* vars.

    Raises:
        RuntimeError: the server exited before it was ready (its log is in the message).
        TimeoutError: ``/readyz`` did not answer 200 within ``ready_timeout`` seconds.
    """
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    full_env = {**os.environ, "TAGGRAM_MODEL_REPOSITORY": str(repository), **(env or {})}
    cmd = [sys.executable, "-m", "taggram", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {ready_timeout} s:\n{server.log()}")
            time.sleep(0.25)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
