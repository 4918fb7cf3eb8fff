"""Waiting for a condition by polling, with a deadline, and picking a free
port: shared by the test harness (tests/support/) and the bench."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy; return that.
    After ``timeout`` seconds fail with ``what`` and the diagnostics."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            details = diagnostics() if diagnostics else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{details}")
        time.sleep(interval)
