"""`make demo`: start the local mail internet, scan it, print the summary and
compare every domain and target with what the network declares.

Everything stays on loopback; results go to .demo/demo.sqlite.
"""

from __future__ import annotations

import subprocess
import sys
import time

from demo.check import compare
from demo.scan import ROOT, crawl_command, environment, scanner_settings
from schema.db import engine_for
from schema.summary import find_run, render, summarize
from testnet import default_spec, running
from testnet.spec import load

DEMO_DIR = ROOT / ".demo"


def main() -> int:
    spec_path = default_spec()
    spec = load(spec_path)
    DEMO_DIR.mkdir(exist_ok=True)
    database = DEMO_DIR / "demo.sqlite"
    for stale in DEMO_DIR.glob("demo.sqlite*"):
        stale.unlink()  # one demo run, compared with the declarations
    url = f"sqlite:///{database}"
    domains = DEMO_DIR / "domains.txt"
    domains.write_text("\n".join(spec.domain_lines) + "\n", encoding="utf-8")
    print(f"starting the test network ({len(spec.servers)} servers, {len(spec.domains)} domains)")
    with running(spec_path, DEMO_DIR / "testnet") as state:
        settings = {**scanner_settings(state), "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        command = crawl_command(domains, settings, "label=demo")
        print(f"scanning it: scrapy crawl tld_mx -a domains={domains.relative_to(ROOT)} …")
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, env=environment(), check=False)
        print(f"crawl finished in {time.monotonic() - started:.1f} s (exit {result.returncode})\n")
    if result.returncode:
        return result.returncode
    engine = engine_for(url)
    run = find_run(engine)
    assert run is not None
    print(render(summarize(engine, *run)))
    problems = compare(spec, engine, run[0])
    declared = len(spec.expected_domains()), len(spec.expected_targets())
    if problems:
        print(f"\n{len(problems)} differences from the test network's declarations:")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print(f"\nall {declared[0]} domains and {declared[1]} targets as the test network declares")
    print(
        f"results: {database.relative_to(ROOT)}  (try: sqlite3 {database.relative_to(ROOT)}"
        " 'select mx_host, ip, category, reasons, error from target_results')"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
