"""`make demo`: start the local mail internet, scan it, print the summary and
compare every domain, target and TLS version with what the network declares.

Everything stays on loopback; results go to .demo/demo.sqlite (`--dir` elsewhere). Each
demo is a new run beside the earlier ones, so two of them can be compared
(`scrapy report --compare`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from demo.check import compare, compare_protocols
from demo.scan import ROOT, crawl_command, environment, scanner_settings
from schema.db import engine_for
from schema.summary import find_run, render, summarize
from testnet import default_spec, running
from testnet.spec import load

DEMO_DIR = ROOT / ".demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEMO_DIR, help="where results go")
    directory = parser.parse_args(argv).dir.resolve()
    spec_path = default_spec()
    spec = load(spec_path)
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "demo.sqlite"
    url = f"sqlite:///{database}"
    domains = directory / "domains.txt"
    domains.write_text("\n".join(spec.domain_lines) + "\n", encoding="utf-8")
    print(f"starting the test network ({len(spec.servers)} servers, {len(spec.domains)} domains)")
    with running(spec_path, directory / "testnet") as state:
        settings = {**scanner_settings(state), "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        command = crawl_command(domains, settings, "label=demo", "depth=protocols")
        print(f"scanning it: scrapy crawl tld_mx -a domains={_shown(domains)} -a depth=protocols …")
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, env=environment(), check=False)
        print(f"crawl finished in {time.monotonic() - started:.1f} s (exit {result.returncode})\n")
    if result.returncode:
        return result.returncode
    engine = engine_for(url)
    run = find_run(engine)  # the latest: the one just made
    assert run is not None
    print(render(summarize(engine, *run)))
    problems = compare(spec, engine, run[0]) + compare_protocols(spec, engine, run[0])
    declared = len(spec.expected_domains()), len(spec.expected_targets())
    versions = len(spec.expected_protocols())
    if problems:
        print(f"\n{len(problems)} differences from the test network's declarations:")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print(
        f"\nall {declared[0]} domains, {declared[1]} targets and the TLS versions of"
        f" {versions} STARTTLS servers as the test network declares"
    )
    print(
        f"results: {_shown(database)}  (try: sqlite3 {_shown(database)}"
        " 'select mx_host, ip, category, reasons, error from target_results')"
    )
    if run[0] > 1:  # earlier demos are kept beside this one
        print(
            f"earlier runs kept; compare with: scrapy report --compare {run[0] - 1} {run[0]}"
            f" -s DATABASE_URL={url}"
        )
    return 0


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


if __name__ == "__main__":
    sys.exit(main())
