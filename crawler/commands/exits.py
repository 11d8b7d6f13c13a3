"""Exit statuses shared by every command (docs/design.md, "Exit statuses")."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

FINISHED, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 3

F = TypeVar("F", bound=Callable[..., None])


def interruptible(run: F) -> F:
    """A command's `run` that Ctrl-C ends with one line and exit status 3, not a
    traceback (Scrapy's usage errors already exit 2)."""

    @functools.wraps(run)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            run(self, *args, **kwargs)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            self.exitcode = INTERRUPTED

    return wrapper  # type: ignore[return-value]
