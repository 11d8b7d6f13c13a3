"""The progress line: what it says while the list streams, once it is read, and at the end."""

from __future__ import annotations

from crawler.progress_line import Snapshot, duration, render


def test_while_the_list_streams_the_total_is_an_estimate():
    line = render(Snapshot(1000, 1200, 5000, False, 300, 20, 12, 100.0))
    assert line == (
        "progress: 1,000 of ~5,000 domains (20.0%); DNS 1,000 answered, 20 in flight; "
        "SMTP 300 probes, 12 in flight; 10.0 domains/s, about 6 min 40 s left"
    )


def test_the_read_so_far_before_any_estimate():
    line = render(Snapshot(0, 0, None, False, 0, 0, 0, 1.0))
    assert line.startswith("progress: 0 domains done (0 read so far); ")
    assert "left" not in line


def test_no_time_left_once_only_probes_remain():
    line = render(Snapshot(77, 77, 77, True, 60, 0, 5, 3.0))
    assert "77 of 77 domains (100.0%)" in line and "left" not in line


def test_durations():
    assert [duration(s) for s in (0.2, 42, 185, 3725)] == [
        "<1 s",
        "42 s",
        "3 min 05 s",
        "1 h 02 min",
    ]
