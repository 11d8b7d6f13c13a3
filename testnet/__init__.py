"""A whole mail internet on loopback: DNS and SMTP servers specified as data.

    python -m testnet up SPEC --state DIR [--smtp-port N] [--dns-port N] [--detach]
    python -m testnet down --state DIR
    python -m testnet domains SPEC
    python -m testnet expect SPEC

In tests: `with testnet.running(spec_path, state_dir) as state: ...`, and
`testnet.spec.load(path)` for what the scan must yield. See docs/design.md, "Test network".
"""

from __future__ import annotations

import atexit
import functools
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

from testnet.control import running
from testnet.state import State

__all__ = ["DEFAULT_SPEC", "State", "default_spec", "running"]

_SPEC_RESOURCE = ("specs", "internet.toml")
_extracted = ExitStack()
atexit.register(_extracted.close)


@functools.cache
def default_spec() -> str:
    """The packaged spec as a file path, for `load()` and for `python -m testnet up`.

    In a checkout or an installed package it is the file itself. In a zipped egg
    (scrapyd) there is no such file: a copy is extracted, kept while this process lives.
    """
    resource = resources.files("testnet").joinpath(*_SPEC_RESOURCE)
    if isinstance(resource, Path):
        return str(resource.resolve())
    return str(_extracted.enter_context(resources.as_file(resource)))


def __getattr__(name: str) -> str:
    # DEFAULT_SPEC is computed on first use: importing testnet extracts nothing.
    if name == "DEFAULT_SPEC":
        return default_spec()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
