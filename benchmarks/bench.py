"""`make bench`: the crawl's cost per probe, against a bare client and `openssl s_client`.

Why (issue 9): CPU per probe decides how many machines a census needs, and "the crawl
costs N ms per probe" only means something beside what the same work costs with nothing
around it. For each world size this:

1. generates a national-list world (`benchmarks.world`, JSON) and serves it with the test
   network in its own process (its CPU measured apart), once per reply delay;
2. runs, one after the other, on the same network with the same concurrency (500),
   retries off, connect timeout 3 s, every other SMTP stage 5 s, DNS timeout 5 s:
   (a) the real `scrapy crawl tld_mx` on a fresh SQLite database, (b) with --postgresql
   the same on a scratch PostgreSQL database (created, dropped), (c) the bare asyncio
   client (`benchmarks.bare`), and with --openssl N, (d) `openssl s_client -starttls smtp`
   run sequentially against N of the world's servers (the Italian study's method);
3. records per run: domains, probes (rows of `probes` for a crawl), wall s, domains/s,
   probes/s, the client's CPU (user + sys from wait4) in ms per probe, its peak RSS,
   the test network's CPU during the run, and each crawl's ratio to the bare client and
   to openssl (CPU ms per probe);
4. checks every crawl against the world's declarations (`demo.check.compare`): any
   difference, a crawl not `finished`, a client that failed, makes the exit status 1.

Prints a markdown table and appends the invocation (machine, versions, code digest,
config, networks, runs) to OUT/bench-<YYYY-MM-DD>.json. The machine's other load shows in
the recorded busy time of all cores and the load average before each run.

    python -m benchmarks.bench [--sizes 1000,10000,100000] [--huge] [--delay 0[,50]]
        [--concurrency 500] [--postgresql] [--openssl N] [--out DIR] [--keep DIR]
        [--dispatch | --no-dispatch]

Worlds above `world.DISPATCH_ABOVE` servers (10^5 domains and up) are served in the test
network's dispatch mode, one socket for every address; there a dead server accepts and
closes instead of refusing (see benchmarks/world.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
    peak_rss_mb,
    scratch_database,
    start,
    start_crawl,
    wait_all,
)
from demo.check import compare
from demo.scan import ROOT, scanner_settings
from schema.db import engine_for
from testnet import running
from testnet.spec import ExpectedTarget, Spec, load
from testnet.state import State

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (1000, 10_000, 100_000)
HUGE = 1_000_000
CONCURRENCY = 500
CONNECT_TIMEOUT = 3  # seconds, as the bare client's
STAGE_TIMEOUT = 5  # seconds: every other SMTP stage, and each DNS try
OPENSSL = "openssl"
OPENSSL_TIMEOUT = 20.0  # seconds for one s_client run
TLS_CATEGORIES = ("strict", "opportunistic")


@dataclass
class Run:
    """One client's pass over one world at one reply delay."""

    size: int
    delay_ms: float
    client: str  # crawl-sqlite, crawl-postgresql, bare, openssl
    wall_s: float = 0.0
    cpu_s: float = 0.0  # the client's user + sys (wait4)
    peak_rss_mb: float = 0.0
    domains: int = 0
    probes: int = 0
    testnet_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0  # every core's busy time: client, testnet, PostgreSQL, others
    load_before: float = 0.0
    exit_code: int = 0
    crawl_statuses: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why this run is not to be trusted
    ratio_to_bare: float | None = None  # CPU ms per probe, this ÷ the bare client's
    ratio_to_openssl: float | None = None

    @property
    def cpu_ms_per_probe(self) -> float | None:
        return round(1000 * self.cpu_s / self.probes, 3) if self.probes else None

    @property
    def probes_per_s(self) -> float:
        return round(self.probes / self.wall_s, 1) if self.wall_s else 0.0

    @property
    def domains_per_s(self) -> float:
        return round(self.domains / self.wall_s, 1) if self.wall_s else 0.0

    def record(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "cpu_ms_per_probe": self.cpu_ms_per_probe,
            "probes_per_s": self.probes_per_s,
            "domains_per_s": self.domains_per_s,
        }


@dataclass
class Network:
    """One test network as started: what it cost before any client ran."""

    size: int
    delay_ms: float
    servers: int
    dispatch: bool
    startup_s: float = 0.0
    startup_cpu_s: float = 0.0
    peak_rss_mb: float = 0.0  # at the end, after every client


@dataclass(frozen=True)
class World:
    """A generated world on disk, and what is needed to check a crawl of it."""

    size: int
    spec_path: Path
    domains_file: Path
    spec: Spec
    dispatch: bool


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...]
    delays: tuple[float, ...]
    concurrency: int
    postgresql: bool
    openssl: int
    seed: int
    out: Path
    dispatch: bool | None = None  # None: as world.py decides (by server count)


# ---------------------------------------------------------------------------------------
# Worlds and networks


def make_world(size: int, seed: int, workdir: Path, dispatch: bool | None = None) -> World:
    directory = workdir / f"world-{size}"
    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / "world.json"
    generated = world.write(size, spec_path, seed, dispatch=dispatch)
    print(world.header(generated), end="", flush=True)
    spec = load(spec_path)
    domains_file = directory / "domains.txt"
    domains_file.write_text("\n".join(spec.domain_lines) + "\n", encoding="utf-8")
    return World(size, spec_path, domains_file, spec, generated.dispatch)


def start_timeout(world_: World) -> float:
    """Seconds a network may take to start: its PKI and spec grow with the world."""
    return 60.0 + len(world_.spec.servers) / 500


@contextmanager
def network(world_: World, delay_ms: float, workdir: Path) -> Iterator[tuple[State, Network]]:
    state_dir = workdir / f"world-{world_.size}" / f"testnet-{delay_ms:g}ms"
    info = Network(world_.size, delay_ms, len(world_.spec.servers), world_.dispatch)
    began = time.monotonic()
    with running(world_.spec_path, state_dir, delay_ms, start_timeout(world_)) as state:
        info.startup_s = round(time.monotonic() - began, 2)
        info.startup_cpu_s = round(cpu_seconds(state.pid), 2)
        try:
            yield state, info
        finally:
            info.peak_rss_mb = peak_rss_mb(state.pid)


# ---------------------------------------------------------------------------------------
# Clients


def crawl_settings(state: State, url: str, concurrency: int) -> dict[str, str]:
    """The world's scanner settings, with the benchmark's timeouts and concurrency."""
    return {
        **scanner_settings(state),
        "DATABASE_URL": url,
        "CONCURRENT_REQUESTS": str(concurrency),
        "SMTP_RETRIES": "0",
        "SMTP_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        "SMTP_BANNER_TIMEOUT": str(STAGE_TIMEOUT),
        "SMTP_COMMAND_TIMEOUT": str(STAGE_TIMEOUT),
        "SMTP_TLS_TIMEOUT": str(STAGE_TIMEOUT),
        "DNS_TIMEOUT": str(STAGE_TIMEOUT),
        "LOG_LEVEL": "INFO",
    }


@contextmanager
def measured(run: Run, state: State) -> Iterator[None]:
    """Wall time, the test network's and the machine's CPU around a run."""
    testnet_cpu, machine_cpu = cpu_seconds(state.pid), machine_busy_seconds()
    run.load_before = round(os.getloadavg()[0], 2)
    began = time.monotonic()
    yield
    run.wall_s = round(time.monotonic() - began, 2)
    run.testnet_cpu_s = round(cpu_seconds(state.pid) - testnet_cpu, 2)
    run.machine_cpu_s = round(machine_busy_seconds() - machine_cpu, 2)


def take_usage(run: Run, process: Process) -> None:
    run.cpu_s = round(process.cpu_s, 2)
    run.peak_rss_mb = process.max_rss_mb
    run.exit_code = process.exit_code
    if process.exit_code:
        run.problems.append(f"exit status {process.exit_code}")


def run_crawl(world_: World, state: State, database: str, opts: Options, workdir: Path) -> Run:
    run = Run(world_.size, state.reply_delay_ms, f"crawl-{database}")
    tag = f"crawl-{world_.size}-{state.reply_delay_ms:g}ms-{database}"
    run_name = f"bench-{tag}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    print(f"  {run.client} …", flush=True)
    with scratch_database(database, workdir, tag) as url:
        settings = crawl_settings(state, url, opts.concurrency)
        with (workdir / f"{tag}.log").open("wb") as log, measured(run, state):
            child = start_crawl(world_.domains_file, settings, [f"run={run_name}"], log)
            (process,) = wait_all([(child, run_name)], time.monotonic(), crawl_timeout(world_))
        take_usage(run, process)
        judge(run, world_.spec, url, run_name)
    if run.problems:
        run.problems.append(f"crawl log: {workdir / f'{tag}.log'}")
    return run


def crawl_timeout(world_: World) -> float:
    return 1800.0 + world_.size / 50  # ample: a hung crawl must still end the bench


def judge(run: Run, spec: Spec, url: str, run_name: str) -> None:
    """Counts from the database and every difference from the declarations."""
    try:
        run_id, run.probes, run.domains, run.crawl_statuses = count_rows(url, run_name)
    except Exception as e:  # no run at all: the crawl failed before storing one
        run.problems.append(f"no run {run_name}: {type(e).__name__}: {e}")
        return
    if run.crawl_statuses != ["finished"]:
        run.problems.append(f"crawl statuses {run.crawl_statuses}")
    engine = engine_for(url)
    try:
        differences = compare(spec, engine, run_id)
    finally:
        engine.dispose()
    if differences:
        run.problems.append(f"{len(differences)} differences from the declarations")
        run.problems += differences[:20]


def run_bare(world_: World, state: State, opts: Options, workdir: Path) -> Run:
    run = Run(world_.size, state.reply_delay_ms, "bare")
    tag = f"bare-{world_.size}-{state.reply_delay_ms:g}ms"
    out = workdir / f"{tag}.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.bare",
        f"--domains={world_.domains_file}",
        f"--dns={state.dns}",
        f"--smtp-port={state.smtp_port}",
        f"--concurrency={opts.concurrency}",
        f"--json={out}",
    ]
    print(f"  {run.client} …", flush=True)
    with (workdir / f"{tag}.log").open("wb") as log, measured(run, state):
        child = start(command, log)
        (process,) = wait_all([(child, tag)], time.monotonic(), crawl_timeout(world_))
    take_usage(run, process)
    if process.exit_code == 0:
        result = json.loads(out.read_text(encoding="utf-8"))
        run.domains, run.probes = result["domains"], result["probes"]
        if result["unexpected_errors"]:
            run.problems.append(f"unexpected errors: {result['examples']}")
        expected = len(probed_ips(world_.spec))
        if run.probes != expected:
            run.problems.append(f"{run.probes} probes, the world has {expected} addresses")
    return run


def probed_ips(spec: Spec) -> set[str]:
    return {t.ip for t in spec.expected_targets() if t.ip is not None and t.skip_reason is None}


def openssl_targets(spec: Spec, count: int) -> list[ExpectedTarget]:
    """`count` targets spread evenly over the world's (every k-th, IPv4, one per IP), so
    their mix of outcomes is the world's."""
    seen: set[str] = set()
    targets = []
    for t in spec.expected_targets():
        if t.ip and ":" not in t.ip and t.skip_reason is None and t.ip not in seen:
            seen.add(t.ip)
            targets.append(t)
    step = max(1, len(targets) // max(count, 1))
    return targets[::step][:count]


def run_openssl(world_: World, state: State, count: int, workdir: Path) -> Run:
    """`openssl s_client -starttls smtp` against each target in turn, QUIT on stdin:
    the children's CPU (wait4), summed."""
    run = Run(world_.size, state.reply_delay_ms, "openssl")
    targets = openssl_targets(world_.spec, count)
    print(f"  {run.client} x{len(targets)} …", flush=True)
    tls = 0
    with (workdir / f"openssl-{world_.size}.log").open("wb") as log, measured(run, state):
        for target in targets:
            process, output = s_client(state, target, log)
            run.cpu_s += process.cpu_s
            run.peak_rss_mb = max(run.peak_rss_mb, process.max_rss_mb)
            run.probes += 1
            tls += b"Cipher is " in output and b"Cipher is (NONE)" not in output
    run.cpu_s = round(run.cpu_s, 3)
    run.domains = 0  # no DNS: it is given the addresses
    expected = sum(t.category in TLS_CATEGORIES for t in targets)
    if tls != expected:
        run.problems.append(f"TLS with {tls} of {len(targets)} servers, {expected} expected")
    return run


def s_client(state: State, target: ExpectedTarget, log: Any) -> tuple[Process, bytes]:
    """One s_client run: QUIT waits on its stdin, which then closes; reaped with wait4."""
    command = [
        OPENSSL,
        "s_client",
        "-starttls",
        "smtp",
        "-connect",
        f"{target.ip}:{state.smtp_port}",
        "-servername",
        target.mx_host,
        "-CAfile",
        state.ca_bundle,
        "-crlf",
    ]
    with tempfile.TemporaryFile() as output:
        began = time.monotonic()
        child = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT
        )
        assert child.stdin is not None
        child.stdin.write(b"QUIT\n")
        child.stdin.close()
        (process,) = wait_all([(child, "openssl")], began, OPENSSL_TIMEOUT)
        output.seek(0)
        text = output.read()
    log.write(b"$ " + " ".join(command).encode() + b"\n" + text[-2000:] + b"\n")
    return process, text


def ratios(runs: Sequence[Run]) -> None:
    """Each crawl's CPU per probe over the bare client's and openssl's, same size and delay."""
    for run in runs:
        if not run.client.startswith("crawl") or run.cpu_ms_per_probe is None:
            continue
        for other, name in (("bare", "ratio_to_bare"), ("openssl", "ratio_to_openssl")):
            base = next(
                (
                    r.cpu_ms_per_probe
                    for r in runs
                    if r.client == other
                    and r.size == run.size
                    and (r.delay_ms == run.delay_ms or other == "openssl")
                ),
                None,
            )
            if base:
                setattr(run, name, round(run.cpu_ms_per_probe / base, 2))


# ---------------------------------------------------------------------------------------
# One size


def bench_size(size: int, opts: Options, workdir: Path) -> tuple[list[Run], list[Network]]:
    print(f"\n== {size} domains", flush=True)
    world_ = make_world(size, opts.seed, workdir, opts.dispatch)
    runs: list[Run] = []
    networks: list[Network] = []
    for delay in opts.delays:
        with network(world_, delay, workdir) as (state, info):
            print(
                f" test network up in {info.startup_s:.1f} s ({delay:g} ms per reply"
                f"{', dispatch mode' if world_.dispatch else ''})",
                flush=True,
            )
            runs.append(run_crawl(world_, state, "sqlite", opts, workdir))
            if opts.postgresql:
                runs.append(run_crawl(world_, state, "postgresql", opts, workdir))
            runs.append(run_bare(world_, state, opts, workdir))
            if opts.openssl and delay == opts.delays[0]:
                runs.append(run_openssl(world_, state, opts.openssl, workdir))
        networks.append(info)
    return runs, networks


# ---------------------------------------------------------------------------------------
# Report


HEADER = (
    "| domains | delay ms | client | probes | wall s | domains/s | probes/s | CPU ms/probe"
    " | ÷ bare | ÷ openssl | peak RSS MB | testnet CPU s | machine CPU s | load before | check |\n"
    "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
)


def table_row(run: Run) -> str:
    def number(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return (
        f"| {run.size:,} | {run.delay_ms:g} | {run.client} | {run.probes:,} | {run.wall_s:.1f}"
        f" | {run.domains_per_s:.0f} | {run.probes_per_s:.0f} | {number(run.cpu_ms_per_probe)}"
        f" | {number(run.ratio_to_bare)} | {number(run.ratio_to_openssl)}"
        f" | {run.peak_rss_mb:.0f} | {run.testnet_cpu_s:.1f} | {run.machine_cpu_s:.1f}"
        f" | {run.load_before:.2f} | {'ok' if not run.problems else 'FAILED'} |"
    )


def network_line(info: Network) -> str:
    return (
        f"test network, {info.size:,} domains at {info.delay_ms:g} ms: {info.servers:,} servers"
        f"{' (dispatch)' if info.dispatch else ''}, up in {info.startup_s:.1f} s"
        f" ({info.startup_cpu_s:.1f} s CPU), peak RSS {info.peak_rss_mb:.0f} MB"
    )


def save(out: Path, opts: Options, runs: list[Run], networks: list[Network]) -> Path:
    """Append this invocation to the day's results file: every run is kept, failures too."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{datetime.now(UTC):%Y-%m-%d}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("benchmark", "python -m benchmarks.bench")
    data.setdefault("runs", []).append(
        {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks.bench", *sys.argv[1:]]),
            "machine": machine(opts.postgresql),
            "config": config(opts),
            "networks": [asdict(n) for n in networks],
            "measurements": [r.record() for r in runs],
        }
    )
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def config(opts: Options) -> dict[str, Any]:
    return {
        "sizes": list(opts.sizes),
        "delays_ms": list(opts.delays),
        "concurrency": opts.concurrency,
        "postgresql": opts.postgresql,
        "openssl": opts.openssl,
        "seed": opts.seed,
        "dispatch": opts.dispatch,
        "smtp_retries": 0,
        "connect_timeout_s": CONNECT_TIMEOUT,
        "stage_timeout_s": STAGE_TIMEOUT,
        "dns_timeout_s": STAGE_TIMEOUT,
    }


def report(runs: list[Run], networks: list[Network], path: Path) -> None:
    print()
    print(HEADER)
    for run in runs:
        print(table_row(run))
    print()
    for info in networks:
        print(network_line(info))
    for run in runs:
        for problem in run.problems:
            print(f"{run.client} at {run.size:,} domains, {run.delay_ms:g} ms: {problem}")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"\nresults: {shown}")


# ---------------------------------------------------------------------------------------
# Main


def bench(opts: Options, workdir: Path) -> int:
    runs: list[Run] = []
    networks: list[Network] = []
    for size in opts.sizes:
        size_runs, size_networks = bench_size(size, opts, workdir)
        runs += size_runs
        networks += size_networks
    ratios(runs)
    path = save(opts.out, opts, runs, networks)
    report(runs, networks, path)
    failed = [run for run in runs if run.problems]
    if failed:
        print(f"\nBENCH FAILED: {len(failed)} run(s) wrong; work files kept in {workdir}")
        return 1
    return 0


def numbers(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def parse(argv: list[str] | None) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="domains per world")
    parser.add_argument("--huge", action="store_true", help=f"add {HUGE:,} domains")
    parser.add_argument("--delay", default="0", help="ms per reply, e.g. 0,50")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--postgresql", action="store_true", help="also crawl into PostgreSQL")
    parser.add_argument("--openssl", type=int, default=0, metavar="N", help="s_client probes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dispatch",
        action=argparse.BooleanOptionalAction,
        help=f"serve SMTP from one socket (default: above {world.DISPATCH_ABOVE:,} servers)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--keep", type=Path, help="keep worlds, logs and SQLite files here")
    args = parser.parse_args(argv)
    try:
        sizes = tuple(int(n) for n in numbers(args.sizes)) + ((HUGE,) if args.huge else ())
        delays = numbers(args.delay)
    except ValueError as e:
        parser.error(f"--sizes and --delay take comma-separated numbers: {e}")
    if not sizes or min(sizes) < 1 or not delays or min(delays) < 0 or args.concurrency < 1:
        parser.error("sizes and concurrency must be positive, delays at least 0")
    if args.openssl < 0:
        parser.error("--openssl must be at least 0")
    opts = Options(
        sizes,
        delays,
        args.concurrency,
        args.postgresql,
        args.openssl,
        args.seed,
        args.out,
        args.dispatch,
    )
    return opts, args.keep


def main(argv: list[str] | None = None) -> int:
    opts, keep = parse(argv)
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        return bench(opts, keep.resolve())
    workdir = Path(tempfile.mkdtemp(prefix="mxcensus-bench-"))
    status = 1
    try:
        status = bench(opts, workdir)
    finally:
        if status == 0:  # otherwise the logs say what went wrong
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
