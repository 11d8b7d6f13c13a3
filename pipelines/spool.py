"""The spool: rows a crawl could not write when its database was lost for good, kept in a
file that the next crawl of the run replays before it starts (docs/design.md, "No batch is
ever lost").

One file per crawl, one batch (table → rows) a line, as JSON with datetimes and bytes
tagged. The name carries a digest of DATABASE_URL and the run's id, so a crawl replays only
what was meant for its own database and run. The merges are idempotent: a batch replayed
twice (a crash between the write and the file's removal) changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from pipelines.rows import Rows

logger = logging.getLogger(__name__)

PREFIX = "mxcensus-spool"


def _database_tag(url: str) -> str:
    shown = make_url(url).render_as_string(hide_password=True)
    return hashlib.sha256(shown.encode()).hexdigest()[:8]


def spool_path(directory: str | Path, url: str, run_id: int, crawl_id: int) -> Path:
    return Path(directory) / f"{PREFIX}-{_database_tag(url)}-run{run_id}-crawl{crawl_id}.jsonl"


def spooled(directory: str | Path, url: str, run_id: int) -> list[Path]:
    """The run's spool files in `directory`, oldest crawl first."""
    found = Path(directory).glob(f"{PREFIX}-{_database_tag(url)}-run{run_id}-crawl*.jsonl")
    return sorted(found, key=lambda p: int(p.stem.rsplit("crawl", 1)[1]))


def append(path: Path, batch: Rows) -> None:
    """Add one batch, on disk before this returns."""
    line = json.dumps(batch, default=_encode, separators=(",", ":"))
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def batches(path: Path) -> Iterator[Rows]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                yield json.loads(line, object_hook=_decode)
            except ValueError:  # a line cut short when its crawl died while writing it
                logger.warning("%s: line %d is not whole; skipped", path, number)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"cannot spool a {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$datetime" in obj:
            return datetime.fromisoformat(obj["$datetime"])
        if "$bytes" in obj:
            return bytes.fromhex(obj["$bytes"])
    return obj
