"""Waiting on a condition with a deadline (never a bare sleep), for the process tests."""

from __future__ import annotations

import time


def wait_for(cond, timeout: float, what: str, poll_s: float = 0.01):
    """``cond()``'s first true value within ``timeout`` seconds; AssertionError naming
    ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"{what}: not within {timeout} s")
