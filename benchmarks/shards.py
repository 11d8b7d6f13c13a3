"""Measure one crawl process against two shards of one run, on a synthetic national list.

Why: docs/design.md ("One run, many processes") promises that a run split over processes
(`-a shard=K/N`, one `-a run=NAME`) is faster on a multi-core machine yet stays one
measurement: every IP probed once per run, never two connections at once to one IP, the same
facts as one process. This
checks both promises on the same world and times them:

1. generate a world (`benchmarks.world`) of N domains and start its test network;
2. (a) one `scrapy crawl tld_mx` process, (b) two processes started together as shards 1/2
   and 2/2 of one run; each on a fresh database (a SQLite file that both shards share, or a
   scratch PostgreSQL database, dropped afterwards);
3. for each: wall seconds, probes (rows of `probes`), probes/s, domains/s, the crawl
   processes' CPU (user + sys, from wait4's rusage) and peak RSS, the test network's CPU;
   `demo.check.compare` against the world's declarations, and the servers' connection log:
   each IP once (SNI re-probes aside), never two connections at once to one IP (50 ms
   slack: a server logs a close a moment after the client has moved on), never MAIL FROM.

Prints a markdown table and appends the run to benchmarks/results/shards-<date>.json, with
the machine (CPUs, Python, package versions, a digest of the crawler's code). Other work on
the machine skews the numbers: the busy time of every core and the load average are recorded
beside each measurement, and --repeat alternates the two crawls to compare them fairly.

    python -m benchmarks.shards --domains 3000 [--database sqlite|postgresql] [--repeat N]
        [--schema-first] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import world
from benchmarks.machine import (
    Process,
    count_rows,
    cpu_seconds,
    machine,
    machine_busy_seconds,
    scratch_database,
    start_crawl,
    upgrade_schema,
    wait_all,
)
from demo.check import compare
from demo.scan import ROOT, scanner_settings
from schema.db import engine_for
from testnet import running
from testnet.spec import Spec, load
from testnet.state import State

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = 500
OVERLAP_SLACK = 0.05  # seconds
LOG_SETTLE = 1.0  # seconds for the servers to log the last closes
MODES = (("1-process", 1), ("2-shards", 2))  # (name, processes)


@dataclass(frozen=True)
class Politeness:
    """What the servers' connection log says about one run."""

    connections: int
    ips_expected: int  # listening servers the run must reach
    ips_connected: int
    sni_reprobes: int  # extra connections with another SNI name (allowed)
    repeated: list[str]  # "ip: n connections with SNI s"
    missing: list[str]
    unexpected: list[str]
    overlapping: list[str]  # "ip: second connection began x ms before the first ended"
    mail_from: int  # connections that sent MAIL FROM (never allowed)

    @property
    def ok(self) -> bool:
        return not (
            self.repeated or self.missing or self.unexpected or self.overlapping or self.mail_from
        )


@dataclass
class Measurement:
    database: str
    mode: str
    round: int  # 1.. with --repeat
    wall_s: float
    processes: list[Process]
    probes: int = 0
    domains: int = 0
    crawl_statuses: list[str] = field(default_factory=list)
    testnet_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0  # every core's busy time: scanner, testnet, PostgreSQL, others
    load_before: float = 0.0  # 1-minute load average when the measurement began
    problems: list[str] = field(default_factory=list)  # compare() with the declarations
    politeness: Politeness | None = None

    @property
    def label(self) -> str:
        return f"{self.mode} #{self.round}"

    @property
    def cpu_s(self) -> float:
        return sum(p.user_s + p.sys_s for p in self.processes)

    def summary(self) -> dict[str, Any]:
        probes = max(self.probes, 1)
        return {
            "probes_per_s": round(self.probes / self.wall_s, 1),
            "domains_per_s": round(self.domains / self.wall_s, 1),
            "scanner_cpu_s": round(self.cpu_s, 2),
            "cpu_ms_per_probe": round(1000 * self.cpu_s / probes, 2),
            "declarations_match": not self.problems,
            "polite": bool(self.politeness and self.politeness.ok),
        }


# ---------------------------------------------------------------------------------------
# The connection log


def listening_ips(spec: Spec) -> set[str]:
    """Addresses a run must connect to: every reached server that accepts connections."""
    reached = {t.ip for t in spec.expected_targets() if t.ip is not None}
    refused = {s.ip for s in spec.servers.values() if s.kind == "refused"}
    return reached - refused


def politeness(spec: Spec, connections: Sequence[Mapping[str, Any]]) -> Politeness:
    by_ip: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in connections:
        by_ip[c["ip"]].append(c)
    expected = listening_ips(spec)
    repeated, overlapping, reprobes = [], [], 0
    for ip, conns in sorted(by_ip.items()):
        per_sni: dict[str | None, int] = defaultdict(int)
        for c in conns:
            per_sni[c.get("sni")] += 1
        reprobes += len(per_sni) - 1
        repeated += [f"{ip}: {n} connections with SNI {s}" for s, n in per_sni.items() if n > 1]
        overlapping += overlaps(ip, conns)
    return Politeness(
        connections=len(connections),
        ips_expected=len(expected),
        ips_connected=len(by_ip),
        sni_reprobes=reprobes,
        repeated=repeated,
        missing=sorted(expected - by_ip.keys()),
        unexpected=sorted(by_ip.keys() - expected),
        overlapping=overlapping,
        mail_from=sum(
            any(cmd.upper().startswith("MAIL") for cmd in c.get("commands", []))
            for c in connections
        ),
    )


def overlaps(ip: str, conns: Sequence[Mapping[str, Any]]) -> list[str]:
    """Connections to one IP that began before the previous one ended (beyond the slack)."""
    found = []
    ordered = sorted(conns, key=lambda c: c["start"])
    latest_end = ordered[0]["end"]
    for c in ordered[1:]:
        early = latest_end - c["start"]
        if early > OVERLAP_SLACK:
            found.append(f"{ip}: a connection began {1000 * early:.0f} ms before another ended")
        latest_end = max(latest_end, c["end"])
    return found


# ---------------------------------------------------------------------------------------
# One measurement


@dataclass(frozen=True)
class Bench:
    """What every measurement shares: the world, its network, the settings."""

    spec: Spec
    state: State
    domains_file: Path
    workdir: Path
    database: str
    concurrency: int
    schema_first: bool  # `scrapy db upgrade` before the crawls start (not timed)

    def settings(self, url: str) -> dict[str, str]:
        return {
            **scanner_settings(self.state),
            "DATABASE_URL": url,
            "CONCURRENT_REQUESTS": str(self.concurrency),
            "SMTP_RETRIES": "0",
            "LOG_LEVEL": "INFO",
        }


def measure(bench: Bench, mode: str, shards: int, round_: int) -> Measurement:
    """Run `shards` processes (1: no shard argument) as one run on a fresh database."""
    tag = f"{mode}-r{round_}"
    run_name = f"bench-{tag}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    with scratch_database(bench.database, bench.workdir, tag) as url:
        settings = bench.settings(url)
        if bench.schema_first:
            upgrade_schema(url)
        seen = len(bench.state.connections())
        testnet_cpu, machine_cpu = cpu_seconds(bench.state.pid), machine_busy_seconds()
        load = os.getloadavg()[0]
        arg_sets = (
            [[f"run={run_name}"]]
            if shards == 1
            else [[f"run={run_name}", f"shard={k}/{shards}"] for k in range(1, shards + 1)]
        )
        logs = [(bench.workdir / f"{tag}-{i}.log").open("wb") for i in range(1, len(arg_sets) + 1)]
        started = time.monotonic()
        try:
            children = [
                (start_crawl(bench.domains_file, settings, args, log), " ".join(args))
                for args, log in zip(arg_sets, logs, strict=True)
            ]
            processes = wait_all(children, started)
        finally:
            for log in logs:
                log.close()
        wall = time.monotonic() - started
        result = Measurement(bench.database, mode, round_, round(wall, 2), processes)
        result.testnet_cpu_s = round(cpu_seconds(bench.state.pid) - testnet_cpu, 2)
        result.machine_cpu_s = round(machine_busy_seconds() - machine_cpu, 2)
        result.load_before = round(load, 2)
        time.sleep(LOG_SETTLE)
        result.politeness = politeness(bench.spec, bench.state.connections()[seen:])
        judge(bench, result, url, run_name)
    return result


def judge(bench: Bench, result: Measurement, url: str, run_name: str) -> None:
    """Counts from the database and the comparison with the declarations."""
    try:
        run_id, result.probes, result.domains, result.crawl_statuses = count_rows(url, run_name)
    except Exception as e:  # no run at all: the crawls failed before storing one
        result.problems = [f"no run {run_name}: {type(e).__name__}: {e}"]
        return
    engine = engine_for(url)
    try:
        result.problems = compare(bench.spec, engine, run_id)
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------
# Report


HEADER = (
    "| database | crawl | wall s | probes | probes/s | domains/s | scanner CPU s | CPU ms/probe"
    " | peak RSS MB per process | testnet CPU s | machine CPU s | load before | declarations"
    " | each IP once, one at a time |\n"
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|"
)


def table_row(m: Measurement) -> str:
    s = m.summary()
    p = m.politeness
    polite = "yes" if p and p.ok else "NO"
    if p and p.sni_reprobes:
        polite += f" ({p.sni_reprobes} SNI re-probes)"
    return (
        f"| {m.database} | {m.label} | {m.wall_s:.1f} | {m.probes} | {s['probes_per_s']:.0f}"
        f" | {s['domains_per_s']:.0f} | {s['scanner_cpu_s']:.1f} | {s['cpu_ms_per_probe']:.1f}"
        f" | {' + '.join(f'{p.max_rss_mb:.0f}' for p in m.processes)}"
        f" | {m.testnet_cpu_s:.1f} | {m.machine_cpu_s:.1f} | {m.load_before:.2f}"
        f" | {'match' if not m.problems else f'{len(m.problems)} diff'}"
        f" | {polite} |"
    )


def medians(measurements: Sequence[Measurement]) -> str:
    walls = {
        mode: statistics.median(m.wall_s for m in measurements if m.mode == mode)
        for mode, _ in MODES
    }
    one, two = (walls[mode] for mode, _ in MODES)
    return f"median wall: 1 process {one:.1f} s, 2 shards {two:.1f} s (speed-up {one / two:.2f}x)"


def details(m: Measurement) -> list[str]:
    """Lines worth reading when something is off."""
    lines = []
    for p in m.processes:
        if p.exit_code:
            lines.append(f"{m.label} [{p.args}]: exit {p.exit_code}")
    if any(s != "finished" for s in m.crawl_statuses):
        lines.append(f"{m.label}: crawl statuses {m.crawl_statuses}")
    lines += [f"{m.label}: {problem}" for problem in m.problems[:20]]
    pol = m.politeness
    if pol and not pol.ok:
        for name in ("repeated", "missing", "unexpected", "overlapping"):
            items = getattr(pol, name)
            if items:
                lines.append(f"{m.label}: {len(items)} {name}, e.g. {items[:5]}")
        if pol.mail_from:
            lines.append(f"{m.label}: {pol.mail_from} connections sent MAIL FROM")
    return lines


def save(config: dict[str, Any], measurements: list[Measurement]) -> Path:
    """Append this invocation to today's results file: every run is kept, failures too."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"shards-{datetime.now(UTC):%Y-%m-%d}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("benchmark", "python -m benchmarks.shards")
    data.setdefault("runs", []).append(
        {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks.shards", *sys.argv[1:]]),
            "database": measurements[0].database,
            "machine": machine(measurements[0].database == "postgresql"),
            "config": config,
            "measurements": [{**asdict(m), **m.summary()} for m in measurements],
        }
    )
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------
# Main


def run(args: argparse.Namespace, workdir: Path) -> int:
    spec_path = workdir / "world.toml"
    generated = world.write(args.domains, spec_path, args.seed)
    spec = load(spec_path)
    domains_file = workdir / "domains.txt"
    domains_file.write_text("\n".join(spec.domain_lines) + "\n", encoding="utf-8")
    print(world.header(generated), end="", flush=True)
    with running(spec_path, workdir / "testnet") as state:
        bench = Bench(
            spec, state, domains_file, workdir, args.database, args.concurrency, args.schema_first
        )
        measurements = []
        # Alternating, so that load from elsewhere on the machine hits both alike.
        for round_ in range(1, args.repeat + 1):
            for mode, shards in MODES:
                print(f"measuring {mode} on {args.database} (round {round_}) …", flush=True)
                measurements.append(measure(bench, mode, shards, round_))
    config = {
        "domains": args.domains,
        "seed": args.seed,
        "schema_first": args.schema_first,
        "repeat": args.repeat,
        "servers": len(spec.servers),
        "targets": len(spec.expected_targets()),
        "settings": {k: v for k, v in bench.settings("…").items() if k != "DATABASE_URL"},
    }
    path = save(config, measurements)
    print()
    print(HEADER)
    for m in measurements:
        print(table_row(m))
    print("\n" + medians(measurements))
    notes = [line for m in measurements for line in details(m)]
    if notes:
        print("\n" + "\n".join(notes))
    healthy = all(not details(m) for m in measurements)
    print(f"\nresults: {path.relative_to(ROOT)}")
    if args.keep or not healthy:
        print(f"world, crawl logs and SQLite files kept in {workdir}")
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shards", description=__doc__)
    parser.add_argument("--domains", type=int, default=3000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of both measurements")
    parser.add_argument(
        "--schema-first",
        action="store_true",
        help="run `scrapy db upgrade` on each fresh database before the crawls (not timed)",
    )
    parser.add_argument("--keep", type=Path, help="keep the world, logs and SQLite files here")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(args, args.keep.resolve())
    workdir = Path(tempfile.mkdtemp(prefix="mxcensus-shards-"))
    status = 1
    try:
        status = run(args, workdir)
    finally:
        if status == 0:  # otherwise the logs say what went wrong
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
