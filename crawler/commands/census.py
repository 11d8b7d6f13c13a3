"""`scrapy census`: one run over scrapyd nodes, as shard jobs, followed to its end.

    scrapy census schedule --nodes http://a:6800,http://b:6800 --shards 8 \\
        -a domains=URL_OR_ABSOLUTE_PATH [-a run=NAME] [-a NAME=VALUE ...] \\
        -s DATABASE_URL=postgresql://USER@HOST/DB [-s NAME=VALUE ...]
    scrapy census status --run NAME [--nodes ...]

Every shard joins one run (named here when -a run= is not given). Jobs go through
scrapyd's schedule.json, round-robin over the nodes; listjobs.json says what scrapyd
knows, the run's `crawls` rows say what happened (scrapyd calls a job that exited 1
"finished"). A shard whose job died is scheduled again on the next node. Scheduling
an existing run again picks it up: finished shards are left alone, live jobs followed.
"""

from __future__ import annotations

import argparse
import configparser
import json
import netrc
import os
import secrets
import sys
import time
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urljoin, urlsplit
from urllib.request import Request, urlopen

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from scrapy.utils.conf import arglist_to_dict, get_sources
from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError

from crawler.commands.db import DatabaseError, missing_sqlite_file, upgrade_before_reading
from crawler.scheduling import (
    JOB_PENDING,
    JOB_RUNNING,
    JOB_UNKNOWN,
    RETRYABLE,
    CrawlRecord,
    ShardState,
    exit_status,
    is_url,
    job_argument_errors,
    job_state,
    masked,
    new_run_name,
    node_for,
    progress,
    record_for,
    shard_labels,
    shard_record,
    shards_of_run,
    split_credentials,
)
from schema.db import engine_for
from schema.models import Crawl, Run
from schema.summary import database_now, render_shards

SPIDER = "tld_mx"
HTTP_TIMEOUT = 30.0  # seconds per scrapyd request
QUIET_PROGRESS = 60.0  # seconds: a progress line at least this often, even when nothing moves
DONE = frozenset({ShardState.FINISHED, ShardState.INTERRUPTED})


class NodeError(Exception):
    """scrapyd did not do what was asked: unreachable, refused, or an error in a 200."""


@dataclass(frozen=True)
class Node:
    """One scrapyd: its URL without credentials, and its basic-auth pair."""

    url: str  # http://host:6800/
    auth: tuple[str, str] | None = None

    def call(self, endpoint: str, params: list[tuple[str, str]], post: bool = False) -> Any:
        query = urlencode(params)
        target = urljoin(self.url, endpoint)
        request = (
            Request(target, data=query.encode(), method="POST")
            if post
            else Request(f"{target}?{query}" if query else target)
        )
        if self.auth:
            token = b64encode(":".join(self.auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urlopen(request, timeout=HTTP_TIMEOUT) as response:
                data = json.loads(response.read())
        except HTTPError as e:
            hint = " (check the node's username and password)" if e.code == 401 else ""
            raise NodeError(f"{target}: HTTP {e.code} {e.reason}{hint}") from e
        except (URLError, OSError, ValueError) as e:
            raise NodeError(f"{target}: {getattr(e, 'reason', e)}") from e
        # scrapyd answers some errors with a 200 (docs/design.md, "Known pitfalls").
        if not isinstance(data, dict) or data.get("status") != "ok":
            message = data.get("message") if isinstance(data, dict) else data
            raise NodeError(f"{target}: {message}")
        return data

    def schedule(
        self,
        project: str,
        args: Mapping[str, str],
        settings: Mapping[str, str],
        version: str | None,
    ) -> str:
        params = [("project", project), ("spider", SPIDER)]
        params += [("setting", f"{name}={value}") for name, value in settings.items()]
        if version:
            params.append(("_version", version))
        params += list(args.items())
        return self.call("schedule.json", params, post=True)["jobid"]

    def jobs(self, project: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """Job id → (pending | running | finished, scrapyd's entry)."""
        data = self.call("listjobs.json", [("project", project)])
        return {
            entry["id"]: (section, entry)
            for section in ("pending", "running", "finished")
            for entry in data.get(section, [])
        }

    def cancel(self, project: str, job: str) -> None:
        self.call("cancel.json", [("project", project), ("job", job)], post=True)


def deploy_targets() -> dict[str, dict[str, str]]:
    """scrapy.cfg's deploy targets, as scrapyd-deploy reads them: [deploy] is
    `default`, [deploy:NAME] inherits from it, $VARIABLES come from the environment."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(get_sources())
    base = dict(config.items("deploy")) if config.has_section("deploy") else {}
    targets = {"default": base} if "url" in base else {}
    for section in config.sections():
        if section.startswith("deploy:"):
            targets[section.removeprefix("deploy:")] = {**base, **dict(config.items(section))}
    return {
        name: {k: _expanded(v) for k, v in target.items() if _expanded(v)}
        for name, target in targets.items()
    }


def _expanded(value: str) -> str:
    """$VARIABLES from the environment; one that is not set is no value (scrapyd-deploy
    would send it as written)."""
    value = os.path.expandvars(value)
    return "" if value.startswith("$") else value


def resolve_node(spec: str, targets: Mapping[str, Mapping[str, str]]) -> Node:
    """A node given as a URL (credentials in it, or from SCRAPYD_USERNAME and
    SCRAPYD_PASSWORD, or ~/.netrc) or as a scrapy.cfg deploy target name."""
    username = password = None
    if is_url(spec):
        url = spec
    elif spec in targets and targets[spec].get("url"):
        url = targets[spec]["url"]
        username, password = targets[spec].get("username"), targets[spec].get("password")
    else:
        known = ", ".join(sorted(targets)) or "none in scrapy.cfg"
        raise UsageError(f"--nodes: {spec!r} is neither a URL nor a deploy target ({known})")
    clean, url_user, url_password = split_credentials(url)
    username = url_user or username or os.environ.get("SCRAPYD_USERNAME")
    password = url_password or password or os.environ.get("SCRAPYD_PASSWORD")
    if not username:
        username, password = _netrc(clean)
    return Node(clean, (username, password or "") if username else None)


def _netrc(url: str) -> tuple[str | None, str | None]:
    try:
        found = netrc.netrc().authenticators(urlsplit(url).hostname or "")
    except (OSError, netrc.NetrcParseError):
        return None, None
    return (found[0], found[2]) if found else (None, None)


class RunRecords:
    """The run's `crawls` rows, read afresh at each look, with the time to judge them by."""

    def __init__(self, url: str) -> None:
        self.engine = engine_for(url, pool_pre_ping=True)

    def read(self, run: str) -> tuple[list[CrawlRecord], datetime]:
        """Raises SQLAlchemyError when the database cannot be read.

        On PostgreSQL, crawls write their heartbeats with the database server's clock
        (crawler/coordination.py): they are judged by that clock too, not by ours."""
        if not inspect(self.engine).has_table("crawls"):
            return [], datetime.now(UTC)  # no crawl has started yet on a new database
        columns = [
            Crawl.id,
            Crawl.shard,
            Crawl.status,
            Crawl.finish_reason,
            Crawl.started_at,
            Crawl.heartbeat_at,
            Crawl.job,
            Crawl.node,
        ]
        query = select(*columns).join(Run, Run.id == Crawl.run_id).where(Run.name == run)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(Crawl.id)).mappings().all()
            now = database_now(conn)
        return [CrawlRecord(**row) for row in rows], now


@dataclass
class Shard:
    """One shard of the run and the job that currently stands for it."""

    label: str  # "K/N"
    index: int  # K
    job: str | None = None
    node: Node | None = None
    after: int = 0  # the run's highest crawl id when the job was scheduled
    retries: int = 0
    state: ShardState = ShardState.PENDING
    done: bool = False


@dataclass
class Census:
    """Schedules and follows one run's shards; prints what happens."""

    nodes: list[Node]
    project: str
    run: str
    records: RunRecords
    lease: float  # RUN_LEASE: seconds without a heartbeat after which a crawl is dead
    args: dict[str, str] = field(default_factory=dict)  # spider arguments, run included
    settings: dict[str, str] = field(default_factory=dict)  # -s for every job
    version: str | None = None
    retries: int = 1
    interval: float = 5.0
    shards: list[Shard] = field(default_factory=list)
    _unreachable: dict[str, float] = field(default_factory=dict)  # node URL → silent since
    _database_lost: bool = False

    # --- scrapyd ---------------------------------------------------------------

    def submit(self, shard: Shard, attempt: int, after: int) -> None:
        """schedule.json on the shard's node for this attempt, else on the next one."""
        errors = []
        for step in range(len(self.nodes)):
            node = self.nodes[node_for(shard.index, attempt + step, len(self.nodes))]
            args = {**self.args, "shard": shard.label}
            try:
                shard.job = node.schedule(self.project, args, self.settings, self.version)
            except NodeError as e:
                errors.append(str(e))
                say(f"shard {shard.label}: not scheduled: {e}")
                continue
            shard.node, shard.after, shard.state = node, after, ShardState.PENDING
            say(f"shard {shard.label}: job {shard.job} on {node.url}")
            return
        raise NodeError("; ".join(errors))

    def listing(self) -> dict[str, tuple[Node, str, dict[str, Any]]]:
        """Every job the nodes know: id → (node, section, entry); notes who is silent."""
        jobs = {}
        for node in self.nodes:
            try:
                listed = node.jobs(self.project)
            except NodeError as e:
                if node.url not in self._unreachable:
                    say(f"cannot list {node.url}'s jobs: {e}")
                self._unreachable.setdefault(node.url, time.monotonic())
                continue
            if self._unreachable.pop(node.url, None) is not None:
                say(f"{node.url} answers again")
            jobs.update({job: (node, section, entry) for job, (section, entry) in listed.items()})
        return jobs

    def scrapyd_says(self, shard: Shard, jobs: Mapping[str, tuple[Node, str, Any]]) -> str | None:
        """scrapyd's word on the shard's job; `unknown` while its node is silent, but
        only for a lease: a node gone for good loses its shards like a dead crawl."""
        if shard.job in jobs:
            return jobs[shard.job][1]
        nodes = [shard.node.url] if shard.node else list(self._unreachable)
        since = [self._unreachable[url] for url in nodes if url in self._unreachable]
        if since and time.monotonic() - min(since) < self.lease:
            return JOB_UNKNOWN
        return None

    # --- start -------------------------------------------------------------------

    def start(self, count: int) -> None:
        """Schedule each shard, unless the run already has it finished or in hand."""
        records, now = self.records.read(self.run)
        jobs = self.listing()
        pending = {
            entry["args"].get("shard"): job
            for job, (_, section, entry) in jobs.items()
            if section == JOB_PENDING and entry.get("args", {}).get("run") == self.run
        }
        after = max((r.id for r in records), default=0)
        for index, label in enumerate(shard_labels(count), start=1):
            shard = Shard(label, index)
            self.shards.append(shard)
            own = [r for r in records if r.shard == label]
            if own:
                state, record = shard_record(own, now, self.lease)
                if state in (ShardState.FINISHED, ShardState.RUNNING):
                    shard.job, shard.after, shard.state = record.job, record.id - 1, state
                    shard.done = state is ShardState.FINISHED
                    say(f"shard {label}: already {state} (crawl {record.id}, job {record.job})")
                    continue
            if label in pending:
                shard.job = pending[label]
                shard.node = jobs[shard.job][0]
                say(f"shard {label}: already queued as job {shard.job} on {shard.node.url}")
                continue
            self.submit(shard, 0, after)

    # --- follow ------------------------------------------------------------------

    def follow(self) -> int:
        """Poll until every shard is finished, interrupted or failed for good."""
        shown, shown_at = "", 0.0
        while True:
            self.look()
            line = progress(s.state for s in self.shards)
            if line != shown or time.monotonic() - shown_at > QUIET_PROGRESS:
                say(f"run {self.run}: {line}")
                shown, shown_at = line, time.monotonic()
            if all(s.done for s in self.shards):
                return exit_status(s.state for s in self.shards)
            time.sleep(self.interval)

    def look(self) -> None:
        """One poll: scrapyd first, then the records, so that a job scrapyd saw end
        has had its last write before the records are read."""
        jobs = self.listing()
        try:
            records, now = self.records.read(self.run)
        except SQLAlchemyError as e:
            if not self._database_lost:  # judge nothing without the records; say it once
                say(f"the run's database cannot be read ({type(e).__name__}); waiting")
            self._database_lost = True
            return
        if self._database_lost:
            say("the run's database can be read again")
            self._database_lost = False
        for shard in self.shards:
            if shard.done:
                continue
            record = record_for(records, shard.label, shard.job, shard.after)
            state = job_state(self.scrapyd_says(shard, jobs), record, now, self.lease)
            if state is not shard.state:
                say(f"shard {shard.label}: {state}{detail(state, record, shard, jobs)}")
            shard.state = state
            if state in DONE:
                shard.done = True
            elif state in RETRYABLE:
                self.retry(shard, jobs, max((r.id for r in records), default=0))

    def retry(self, shard: Shard, jobs: Mapping[str, tuple[Node, str, Any]], after: int) -> None:
        if shard.retries >= self.retries:
            shard.done = True
            retries = f"{shard.retries} retr{'y' if shard.retries == 1 else 'ies'}"
            say(f"shard {shard.label}: failed for good after {retries}")
            return
        if shard.job in jobs and jobs[shard.job][1] in (JOB_PENDING, JOB_RUNNING):
            node = jobs[shard.job][0]
            try:  # a process without a heartbeat may still hold a slot: free it
                node.cancel(self.project, shard.job)
            except NodeError as e:
                say(f"shard {shard.label}: job {shard.job} not cancelled: {e}")
        shard.retries += 1
        say(f"shard {shard.label}: scheduling it again (retry {shard.retries}/{self.retries})")
        try:
            self.submit(shard, shard.retries, after)
        except NodeError:
            shard.done = True
            say(f"shard {shard.label}: no node took it; failed")


def detail(
    state: ShardState,
    record: CrawlRecord | None,
    shard: Shard,
    jobs: Mapping[str, tuple[Node, str, dict[str, Any]]],
) -> str:
    """What a state change line adds: where the crawl runs, or why it ended."""
    where = f" on {record.node}" if record and record.node else ""
    if state is ShardState.PENDING:
        return f" (job {shard.job})"
    if state is ShardState.RUNNING:
        return f"{where} (job {shard.job})" if record else f" (job {shard.job}, starting)"
    if state is ShardState.DEAD:
        return f"{where}: no heartbeat, or its process is gone (job {shard.job})"
    if record is not None:
        reason = f": {record.finish_reason}" if record.finish_reason else ""
        return f"{where}{reason} (crawl {record.id}, job {shard.job})"
    if shard.job in jobs:
        node, _, entry = jobs[shard.job]
        log = entry.get("log_url")
        return f": job {shard.job} ended without a crawl record" + (
            f"; its log: {urljoin(node.url, log)}" if log else ""
        )
    return f": job {shard.job} is unknown to its node"


def say(line: str) -> None:
    print(f"{datetime.now().strftime('%H:%M:%S')} {line}", flush=True)


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return (
            "schedule [--nodes URL_OR_TARGET,...] [--shards N] -a domains=URL_OR_ABSOLUTE_PATH "
            "[-a run=NAME] [-a NAME=VALUE ...] [-s NAME=VALUE ...] [--no-follow] "
            "| status --run NAME [--nodes ...]"
        )

    def short_desc(self) -> str:
        return "Run one census as shard jobs on scrapyd nodes, and follow it to its end"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--nodes",
            help="scrapyd URLs (http://user:pass@host:6800) or scrapy.cfg deploy targets, "
            "comma-separated (default the `default` target)",
        )
        parser.add_argument("--shards", type=int, help="number of shards (default one a node)")
        parser.add_argument(
            "-a", dest="spargs", action="append", default=[], metavar="NAME=VALUE",
            help="spider argument for every job (may be repeated)",
        )  # fmt: skip
        parser.add_argument("--project", help="scrapyd project (default scrapy.cfg's)")
        parser.add_argument("--version", help="egg version to run (default the latest)")
        parser.add_argument(
            "--follow",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="follow the jobs to their end (default) or return once scheduled",
        )
        parser.add_argument(
            "--retries", type=int, default=1, help="new jobs for a shard whose job died"
        )
        parser.add_argument(
            "--interval", type=float, default=5.0, help="seconds between polls (default 5)"
        )
        parser.add_argument("--run", help="the run's name (status)")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1 or args[0] not in ("schedule", "status"):
            raise UsageError("give an action: scrapy census schedule … | scrapy census status …")
        assert self.settings is not None
        try:
            spider_args = arglist_to_dict(opts.spargs)
        except ValueError:
            raise UsageError("invalid -a value, use -a NAME=VALUE", print_help=False) from None
        nodes = self._nodes(opts.nodes)
        project = opts.project or deploy_targets().get("default", {}).get("project", "mxcensus")
        if args[0] == "status":
            self.exitcode = self._status(nodes, project, opts)
            return
        census = self._census(nodes, project, spider_args, opts)
        try:
            self.exitcode = self._schedule(census, opts)
        except KeyboardInterrupt:
            say(
                f"stopped following; the jobs go on. Again: scrapy census status --run {census.run}"
            )
            self.exitcode = 3

    def _nodes(self, spec: str | None) -> list[Node]:
        targets = deploy_targets()
        names = [n.strip() for n in (spec or "default").split(",") if n.strip()]
        if not names:
            raise UsageError("--nodes: give at least one scrapyd URL or deploy target")
        return [resolve_node(name, targets) for name in names]

    def _census(
        self, nodes: list[Node], project: str, args: dict[str, str], opts: argparse.Namespace
    ) -> Census:
        assert self.settings is not None
        settings = arglist_to_dict(opts.set)
        settings["DATABASE_URL"] = self.settings["DATABASE_URL"]
        errors = job_argument_errors(args, settings)
        if errors:
            raise UsageError("; ".join(errors), print_help=False)
        shards = opts.shards if opts.shards is not None else len(nodes)
        if shards < 1 or opts.retries < 0 or opts.interval <= 0:
            raise UsageError("--shards must be 1 or more, --retries 0 or more, --interval > 0")
        run = args.get("run") or new_run_name(
            args.get("label"), datetime.now(UTC), secrets.token_hex(2)
        )
        opts.shards = shards  # the default resolved, for _schedule
        return Census(
            nodes=nodes,
            project=project,
            run=run,
            records=RunRecords(settings["DATABASE_URL"]),
            lease=self.settings.getfloat("RUN_LEASE", 300.0),
            args={**args, "run": run},
            settings=settings,
            version=opts.version,
            retries=opts.retries,
            interval=opts.interval,
        )

    def _schedule(self, census: Census, opts: argparse.Namespace) -> int:
        say(
            f"run {census.run}: {opts.shards} shard{'s' if opts.shards != 1 else ''} of "
            f"{census.args['domains']} over "
            f"{', '.join(n.url for n in census.nodes)}; results in "
            f"{masked(census.settings['DATABASE_URL'])}"
        )
        try:
            upgrade_before_reading(census.settings["DATABASE_URL"])  # an older mxcensus's
            census.start(opts.shards)
        except DatabaseError as e:
            say(str(e))
            return 1
        except SQLAlchemyError as e:
            say(f"the run's database cannot be read: {type(e).__name__}: {e.args[0]}")
            return 1
        except NodeError as e:
            deployed = "" if "not found" not in str(e) else "; is it deployed (scrapyd-deploy)?"
            say(f"no node took the job: {e}{deployed}")
            return 1
        if not opts.follow:
            say(f"scheduled; follow it with: scrapy census status --run {census.run}")
            return 0
        status = census.follow()
        try:
            records, _ = census.records.read(census.run)
        except SQLAlchemyError:
            records = []
        print(render_shards(shard_rows(census.shards, records)))
        return status

    def _status(self, nodes: list[Node], project: str, opts: argparse.Namespace) -> int:
        """One look at a run: its shards from its records, with scrapyd's word."""
        assert self.settings is not None
        if not opts.run:
            raise UsageError("status needs --run NAME")
        url = self.settings["DATABASE_URL"]
        if missing_sqlite_file(url):  # looking would create an empty one
            print(f"no database at {masked(url)}", file=sys.stderr)
            return 1
        lease = self.settings.getfloat("RUN_LEASE", 300.0)
        census = Census(nodes, project, opts.run, RunRecords(url), lease)
        try:
            upgrade_before_reading(url)
            records, now = census.records.read(opts.run)
        except DatabaseError as e:
            print(e, file=sys.stderr)
            return 1
        except SQLAlchemyError as e:
            print(f"cannot read {masked(url)}: {type(e).__name__}", file=sys.stderr)
            return 1
        jobs = census.listing()
        rows = []
        for label, state, record in shards_of_run(records, now, census.lease):
            if record is not None and record.job in jobs:
                state = job_state(jobs[record.job][1], record, now, census.lease)
            rows.append((label, state, record.node if record else None, record and record.job))
        queued = {
            entry["args"].get("shard"): job
            for job, (_, section, entry) in jobs.items()
            if section == JOB_PENDING and entry.get("args", {}).get("run") == opts.run
        }
        rows = [
            (label, ShardState.PENDING, None, queued[label])
            if state is ShardState.MISSING and label in queued
            else (label, state, node, job)
            for label, state, node, job in rows
        ]
        if not rows:
            print(f"no shards of run {opts.run!r} in {masked(url)}")
            return 1
        print(f"run {opts.run}: {progress(state for _, state, _, _ in rows)}")
        print(render_shards(rows))
        return 0


def shard_rows(
    shards: list[Shard], records: list[CrawlRecord]
) -> list[tuple[str, ShardState, str | None, str | None]]:
    """The follower's final table: each shard's state, node and job."""
    rows = []
    for shard in shards:
        record = record_for(records, shard.label, shard.job, shard.after)
        rows.append((shard.label, shard.state, record.node if record else None, shard.job))
    return rows
