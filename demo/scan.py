"""Run the real `scrapy crawl tld_mx` against a running test network."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from testnet.control import environment as package_environment
from testnet.state import State

EHLO_NAME = "scanner.mxcensus.test"


def checkout() -> Path | None:
    """The source checkout the project runs from (scrapy.cfg beside the packages);
    None when the packages are installed or zipped in an egg (scrapyd)."""
    package = resources.files("demo")
    if isinstance(package, Path) and (package.parent / "scrapy.cfg").is_file():
        return package.parent.resolve()
    return None


# Where crawls run and the demo writes: the checkout, else the current directory.
ROOT = checkout() or Path.cwd()


def scanner_settings(state: State) -> dict[str, str]:
    """Scanner settings that point at a running test network: its resolver, SMTP
    port and CA, the timeouts its spec was declared for, and loopback allowed."""
    return {
        **state.scanner_settings(),
        "ALLOW_NONPUBLIC_TARGETS": "True",
        "SMTP_EHLO_NAME": EHLO_NAME,
    }


def crawl_command(
    domains: str | Path, settings: Mapping[str, str], *args: str, extra: Sequence[str] = ()
) -> list[str]:
    """`args` are spider arguments (NAME=VALUE), `extra` other options (e.g. -o FILE)."""
    command = [sys.executable, "-m", "scrapy", "crawl", "tld_mx", "-a", f"domains={domains}"]
    command += extra
    for arg in args:
        command += ["-a", arg]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    return command


def environment() -> dict[str, str]:
    """The crawl finds the project without a scrapy.cfg in its directory: the packages
    on its path and the settings module named, as scrapyd's runner does."""
    env = package_environment()
    env.setdefault("SCRAPY_SETTINGS_MODULE", "crawler.settings")
    return env


def crawl(
    domains: str | Path,
    settings: Mapping[str, str],
    *args: str,
    timeout: float = 300,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run one crawl to its end in the project directory; output captured."""
    return subprocess.run(
        crawl_command(domains, settings, *args, extra=extra),
        cwd=ROOT,
        env=environment(),
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
