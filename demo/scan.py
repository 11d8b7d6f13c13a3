"""Run the real `scrapy crawl tld_mx` against a running test network."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from testnet.state import State

ROOT = Path(__file__).resolve().parent.parent
EHLO_NAME = "scanner.mxcensus.test"


def scanner_settings(state: State) -> dict[str, str]:
    """Scanner settings that point at a running test network: its resolver, SMTP
    port and CA, the timeouts its spec was declared for, and loopback allowed."""
    return {
        **state.scanner_settings(),
        "ALLOW_NONPUBLIC_TARGETS": "True",
        "SMTP_EHLO_NAME": EHLO_NAME,
    }


def crawl_command(domains: str | Path, settings: Mapping[str, str], *args: str) -> list[str]:
    command = [sys.executable, "-m", "scrapy", "crawl", "tld_mx", "-a", f"domains={domains}"]
    for arg in args:
        command += ["-a", arg]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    return command


def crawl(
    domains: str | Path, settings: Mapping[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run one crawl to its end in the project directory; output captured."""
    return subprocess.run(
        crawl_command(domains, settings, *args),
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
