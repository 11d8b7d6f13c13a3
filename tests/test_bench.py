"""`make bench` at its smallest size: the harness runs, checks and records what it claims.

Why: CI cannot time a benchmark, but it can keep it working: the crawl, the bare client
and openssl all run on one generated world, the crawl matches the declarations, the JSON
holds every field with sane values, and a crawl that disagrees with the declarations
fails the bench. Not a timed test: no figure is asserted, only that figures exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench
from demo.scan import ROOT
from testnet.spec import load

SIZE = 300  # domains: a few seconds per client
FIELDS = (
    "size",
    "delay_ms",
    "client",
    "domains",
    "probes",
    "wall_s",
    "domains_per_s",
    "probes_per_s",
    "cpu_s",
    "cpu_ms_per_probe",
    "peak_rss_mb",
    "testnet_cpu_s",
    "machine_cpu_s",
    "problems",
)


def run_bench(out: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.bench", f"--sizes={SIZE}", f"--out={out}"]
    done = subprocess.run(
        [*command, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| crawl-sqlite |" in done.stdout  # the markdown table
    (results,) = out.glob("bench-*.json")
    (invocation,) = json.loads(results.read_text())["runs"]
    return invocation


def by_client(invocation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["client"]: m for m in invocation["measurements"]}


def test_bench_smoke(tmp_path: Path) -> None:
    invocation = run_bench(tmp_path, "--openssl=10")
    runs = by_client(invocation)
    assert set(runs) == {"crawl-sqlite", "bare", "openssl"}
    for run in runs.values():
        assert set(FIELDS) <= run.keys()
        assert run["problems"] == [] and run["size"] == SIZE and run["delay_ms"] == 0
        assert run["probes"] > 0 and run["wall_s"] > 0 and run["cpu_ms_per_probe"] > 0
    crawl, bare = runs["crawl-sqlite"], runs["bare"]
    assert crawl["crawl_statuses"] == ["finished"]  # and compare() found no difference
    assert crawl["probes"] == bare["probes"] and crawl["domains"] == bare["domains"] == SIZE
    assert crawl["ratio_to_bare"] > 0 and crawl["ratio_to_openssl"] > 0
    assert crawl["peak_rss_mb"] > 0 and bare["peak_rss_mb"] > 0
    assert runs["openssl"]["probes"] == 10
    (net,) = invocation["networks"]
    assert net["servers"] > 0 and net["startup_s"] > 0 and not net["dispatch"]
    machine = invocation["machine"]
    assert machine["nproc"] and machine["python"] and machine["source_sha256"]
    assert machine["packages"]["Scrapy"]
    assert invocation["config"]["concurrency"] == bench.CONCURRENCY


def test_bench_on_postgresql(tmp_path: Path, pg_server_url: str) -> None:
    """--postgresql: a scratch database is made, crawled into, checked and dropped."""
    invocation = run_bench(tmp_path, "--postgresql", env={"MXCENSUS_PG_URL": pg_server_url})
    runs = by_client(invocation)
    assert set(runs) == {"crawl-sqlite", "crawl-postgresql", "bare"}
    assert runs["crawl-postgresql"]["problems"] == []
    assert runs["crawl-postgresql"]["probes"] == runs["crawl-sqlite"]["probes"] > 0
    assert invocation["machine"]["postgresql"]


def test_bench_in_dispatch_mode(tmp_path: Path) -> None:
    """A world served from one wildcard socket (as 10^5 and 10^6 are): the crawl still
    matches every declaration, dead addresses included (accepted, then closed)."""
    invocation = run_bench(tmp_path, "--dispatch")
    (net,) = invocation["networks"]
    assert net["dispatch"]
    runs = by_client(invocation)
    assert runs["crawl-sqlite"]["problems"] == [] and runs["bare"]["problems"] == []
    assert runs["crawl-sqlite"]["probes"] == runs["bare"]["probes"] > 0


def test_a_wrong_crawl_fails_the_bench(tmp_path: Path) -> None:
    """A crawl judged against declarations it does not meet is a failed run, with the
    differences said: the network serves the world, the check reads an altered copy."""
    world = bench.make_world(SIZE, 1, tmp_path)
    data = json.loads(world.spec_path.read_text())
    strict = next(s for s in data["servers"].values() if s["expect"]["category"] == "strict")
    strict["expect"] = {"category": "none"}
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(data))
    wrong = bench.World(SIZE, world.spec_path, world.domains_file, load(altered), False)
    opts = bench.Options((SIZE,), (0.0,), 100, False, 0, 1, tmp_path)
    with bench.network(world, 0, tmp_path) as (state, _):
        run = bench.run_crawl(wrong, state, "sqlite", opts, tmp_path)
    assert run.probes > 0 and run.crawl_statuses == ["finished"]
    assert run.problems[0] == "1 differences from the declarations"
    assert "declared {'category': 'none'" in run.problems[1]


@pytest.mark.parametrize("argv", [["--sizes=0"], ["--delay=-1"], ["--sizes=x"]])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench.parse(argv)
    assert stopped.value.code == 2
