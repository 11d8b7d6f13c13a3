"""`make demo` twice: two runs side by side, each as the test network declares, and
`scrapy report --compare` between them."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import text

from demo.scan import ROOT, environment
from schema.db import engine_for


def demo(directory) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demo", "--dir", str(directory)],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_demo_keeps_earlier_runs(tmp_path):
    first = demo(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = demo(tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "as the test network declares" in second.stdout
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    assert f"scrapy report --compare 1 2 -s DATABASE_URL={url}" in second.stdout
    with engine_for(url).connect() as conn:
        runs = conn.execute(text("SELECT id FROM runs ORDER BY id")).scalars().all()
        finished = conn.execute(text("SELECT COUNT(*) FROM crawls WHERE status = 'finished'"))
        assert (runs, finished.scalar_one()) == ([1, 2], 2)
    compared = subprocess.run(
        [
            sys.executable,
            "-m",
            "scrapy",
            "report",
            "--compare",
            "1",
            "2",
            "-s",
            f"DATABASE_URL={url}",
        ],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
