"""A whole mail internet on loopback: DNS and SMTP servers specified as data.

    python -m testnet up SPEC --state DIR [--smtp-port N] [--dns-port N] [--detach]
    python -m testnet down --state DIR
    python -m testnet domains SPEC
    python -m testnet expect SPEC

In tests: `with testnet.running(spec_path, state_dir) as state: ...`, and
`testnet.spec.load(path)` for what the scan must yield. See DESIGN.md, "Test network".
"""

from pathlib import Path

from testnet.control import running
from testnet.state import State

DEFAULT_SPEC = str(Path(__file__).resolve().with_name("specs") / "internet.toml")

__all__ = ["DEFAULT_SPEC", "State", "running"]
