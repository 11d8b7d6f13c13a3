"""Driving the global Twisted reactor from plain pytest: iterated, never run.

The reactor is AsyncioSelectorReactor, as in Scrapy crawls, unless another was
installed first. Tests only iterate it, so later tests may still use it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


def global_reactor() -> Any:
    if "twisted.internet.reactor" not in sys.modules:
        from scrapy.utils.reactor import install_reactor

        install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    from twisted.internet import reactor

    if reactor.running:
        pytest.skip("the reactor is already running elsewhere")
    return reactor


def wait(reactor: Any, d: Deferred[Any], timeout: float = 20) -> Any:
    """Spin the reactor until `d` fires; return its result."""
    results: list[Any] = []
    d.addBoth(results.append)
    deadline = time.monotonic() + timeout
    while not results:
        assert time.monotonic() < deadline, "reactor spun too long"
        reactor.iterate(0.01)
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def spin(reactor: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reactor.iterate(0.01)
