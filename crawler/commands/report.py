"""`scrapy report`: the two studies' tables and charts for a run, or the change between two."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from crawler.commands.db import DatabaseError, upgrade_before_reading
from crawler.commands.exits import interruptible
from reports import compare, export, tables
from reports.runs import NoRun, find, shown
from reports.snapshot import snapshot

FORMATS = ("text", "csv", "json")


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return (
            "[--run ID_OR_NAME | --label LABEL | --compare RUN_A RUN_B] "
            "[--format text|csv|json] [--output DIR] [--html DIR] [--limit N]"
        )

    def short_desc(self) -> str:
        return "Report a run: the STARTTLS studies' tables and charts, or change between runs"

    def long_desc(self) -> str:
        return (
            "Print the report of the latest run (or --run, or the latest run with a domain "
            "labelled --label): the Italian study's table, Facebook's Figures 1-4, key sizes, "
            "verification results, protocol versions, protocol support (a run crawled with -a "
            "depth=protocols: the versions each host accepts, its highest and lowest, ciphers "
            "and forward secrecy per version), cipher suites, connection errors and the "
            "comparison across labels. --compare RUN_A RUN_B shows what changed from A to B. "
            "--format csv writes one file per table into --output DIR; json prints one object "
            "keyed by table name (or writes DIR/report.json). --html DIR writes a "
            "self-contained page, DIR/index.html, with its charts as PNG files beside it."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--run", metavar="ID_OR_NAME", help="run id or name (default: the latest run)"
        )
        parser.add_argument("--label", help="the latest run with a domain of this label")
        parser.add_argument(
            "--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="what changed from A to B"
        )
        parser.add_argument("--format", metavar="FORMAT", help="text (default), csv or json")
        parser.add_argument("--output", metavar="DIR", help="write files here, not to stdout")
        parser.add_argument("--html", metavar="DIR", help="write DIR/index.html and its charts")
        parser.add_argument(
            "--limit",
            type=int,
            metavar="N",
            default=None,
            help="comparison lists: at most N units each (text and HTML default 50; "
            "csv and json list all)",
        )

    @interruptible
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        fmt = self._check(args, opts)
        assert self.settings is not None
        url = self.settings.get("DATABASE_URL")
        try:
            upgrade_before_reading(url)  # a database an older mxcensus made
            refs = opts.compare or [opts.run]
            runs = find(url, refs, None if opts.compare else opts.label)
        except (DatabaseError, NoRun) as e:
            print(e, file=sys.stderr)
            self.exitcode = 1
            return
        if opts.compare and runs[0].id == runs[1].id:
            raise UsageError(f"--compare needs two different runs (both are {runs[0]})")
        # Lists of changed units: capped on screen and on the page, whole in the exports.
        limit = opts.limit if opts.limit is not None else (None if fmt in ("csv", "json") else 50)
        with snapshot(url, [r.id for r in runs]) as snap:
            if opts.compare:
                report = compare.build(snap, *runs, shown(url), limit)
            else:
                report = tables.build(snap, runs[0], shown(url))
        try:
            self._write(report, fmt, opts)
        except OSError as e:  # --output /proc/nope, a full disk: one line, not a traceback
            where = e.filename or opts.output or opts.html
            print(
                f"cannot write {where}: {e.strerror or e}; give a directory that can be "
                "created and written",
                file=sys.stderr,
            )
            self.exitcode = 1

    def _write(self, report: Any, fmt: str | None, opts: argparse.Namespace) -> None:
        if opts.html:
            from reports import html  # imports matplotlib: only when asked for

            page = html.write(report, Path(opts.html))
            print(f"wrote {page}", file=sys.stderr if fmt else sys.stdout)
        if fmt or not opts.html:
            output = Path(opts.output) if opts.output else None
            for path in export.write(report, fmt or "text", output):
                print(path)

    def _check(self, args: list[str], opts: argparse.Namespace) -> str | None:
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}")
        if opts.run is not None and opts.label is not None:
            raise UsageError("give --run or --label, not both")
        if opts.compare and (opts.run is not None or opts.label is not None):
            raise UsageError("--compare names its two runs: leave out --run and --label")
        if opts.format is not None and opts.format not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {opts.format!r}")
        if opts.format == "csv" and not opts.output:
            raise UsageError("--format csv writes one file per table: give --output DIR")
        if opts.limit is not None and opts.limit < 0:
            raise UsageError("--limit must be 0 or more")
        for option in ("output", "html"):
            path = getattr(opts, option)
            if path is not None and Path(path).exists() and not Path(path).is_dir():
                raise UsageError(f"--{option} {path} exists and is not a directory")
        return opts.format
