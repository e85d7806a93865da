"""Starting a local server process on loopback: a free port, and waiting until its health URL answers.

Shared by the launchers of the API and the dashboard (demo, tests, benchmarks), which run them as child
processes on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_S = 0.2


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ok(url: str, process: subprocess.Popen[bytes], timeout_s: float, log_path: Path | None = None) -> None:
    """Return once ``GET url`` answers 200; RuntimeError if ``process`` exits first or ``timeout_s`` passes."""
    see = "" if log_path is None else f"; see {log_path}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before {url} answered{see}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(POLL_S)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s{see}")


@contextmanager
def running_server(command: list[str], health_url: str, *, env: dict[str, str] | None = None,
                   log_path: Path | None = None, timeout_s: float = 120.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` as a child process until the block ends, yielding it once ``health_url`` answers 200.

    Output goes to ``log_path`` (discarded when None). On exit the child gets SIGTERM, then SIGKILL after
    20 s, so no server outlives its caller, also when the block is left by Ctrl-C or an error.
    """
    with open(log_path or os.devnull, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_ok(health_url, process, timeout_s, log_path)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
