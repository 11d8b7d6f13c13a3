"""The benchmark's bare client does the crawl's work on the test network.

Why: the benchmark compares the crawl's CPU per probe with this client's; that means
something only if both probe the same addresses, reach TLS on the same ones, and are as
polite (each IP once, never MAIL FROM). Checked against the spec's declarations and the
servers' own connection log. About 6 s: the silent servers hold a probe for a 5 s stage.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from demo.scan import ROOT
from testnet.spec import Spec
from testnet.state import State

TLS_CATEGORIES = {"strict", "opportunistic"}
LOG_SETTLE = 1.0  # seconds for the servers to log the last closes


def run_bare(net: State, domains: Path, out: Path) -> dict[str, object]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.bare",
        f"--domains={domains}",
        f"--dns={net.dns}",
        f"--smtp-port={net.smtp_port}",
        f"--json={out}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text(encoding="utf-8"))


def test_bare_client_probes_what_the_crawl_probes(net: State, spec: Spec, tmp_path: Path) -> None:
    domains = tmp_path / "domains.txt"
    domains.write_text("\n".join(spec.domain_lines) + "\n", encoding="utf-8")
    targets = [t for t in spec.expected_targets() if t.ip is not None and t.skip_reason is None]
    ips = {t.ip for t in targets}
    tls_ips = {t.ip for t in targets if t.category in TLS_CATEGORIES}
    seen = len(net.connections())

    result = run_bare(net, domains, tmp_path / "bare.json")

    assert result["domains"] == len(spec.domains)
    assert result["skipped_lines"] == spec.expected_invalid + spec.expected_duplicates
    assert result["probes"] == len(ips)
    assert result["probes_tls"] == result["certificates"] == len(tls_ips)
    assert result["unexpected_errors"] == 0, result["examples"]
    assert result["cpu_ms_per_probe"] > 0
    time.sleep(LOG_SETTLE)
    log = net.connections()[seen:]
    per_ip = Counter(c["ip"] for c in log)
    assert max(per_ip.values()) == 1
    assert {c["ip"] for c in log if c["tls"]} == tls_ips
    commands = [cmd.upper() for c in log for cmd in c["commands"]]
    assert not [cmd for cmd in commands if cmd.startswith(("MAIL", "RCPT", "DATA"))]
