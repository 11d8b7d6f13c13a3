"""Tests for `crawler.smtp.replies`: the incremental, bounded SMTP reply reader."""

from __future__ import annotations

import pytest

from crawler.smtp.facts import Reply
from crawler.smtp.replies import (
    MAX_LINE_LENGTH,
    MAX_REPLY_LENGTH,
    ReplyError,
    ReplyReader,
    ehlo_keywords,
    parse_line,
)


def read_all(*chunks: bytes) -> list[Reply]:
    reader = ReplyReader()
    replies: list[Reply] = []
    for chunk in chunks:
        reader.feed(chunk)
        replies.extend(reader.replies())
    return replies


def test_single_line_reply() -> None:
    """A ``220 text`` line is one reply with that code and text."""
    assert read_all(b"220 mx.example.org ESMTP ready\r\n") == [
        Reply(220, ("mx.example.org ESMTP ready",))
    ]


def test_multi_line_reply() -> None:
    """``250-`` continuation lines are gathered up to the ``250 `` last line
    (RFC 5321 §4.2.1)."""
    data = b"250-mx.example.org hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n"
    assert read_all(data) == [
        Reply(250, ("mx.example.org hello", "PIPELINING", "SIZE 10240000", "STARTTLS"))
    ]


def test_bare_code_line_ends_reply() -> None:
    """A bare ``250`` with no text is a valid last line; ``250-`` a valid
    empty continuation."""
    assert read_all(b"250-\r\n250\r\n") == [Reply(250, ("", ""))]
    assert read_all(b"221\r\n") == [Reply(221, ("",))]


def test_bare_lf_line_ends() -> None:
    """Lines ending in a bare LF, as some servers send them, are accepted."""
    assert read_all(b"250-a\n250 b\n") == [Reply(250, ("a", "b"))]


def test_incremental_feeding_byte_by_byte() -> None:
    """A reply that arrives one byte at a time is returned once, when complete."""
    data = b"250-first\r\n250 second\r\n"
    reader = ReplyReader()
    seen: list[Reply] = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        reply = reader.next_reply()
        if reply is not None:
            seen.append(reply)
            assert i == len(data) - 1
    assert seen == [Reply(250, ("first", "second"))]


def test_several_replies_in_one_chunk() -> None:
    """Replies that arrive together are returned one at a time, in order."""
    reader = ReplyReader()
    reader.feed(b"220 hi\r\n250 ok\r\n221 bye\r\n")
    assert reader.next_reply() == Reply(220, ("hi",))
    assert reader.next_reply() == Reply(250, ("ok",))
    assert reader.next_reply() == Reply(221, ("bye",))
    assert reader.next_reply() is None


def test_incomplete_reply_waits() -> None:
    """Continuation lines without their last line are not a reply yet."""
    reader = ReplyReader()
    reader.feed(b"250-one\r\n250-two\r\n250 thr")
    assert reader.next_reply() is None
    reader.feed(b"ee\r\n")
    assert reader.next_reply() == Reply(250, ("one", "two", "three"))


def test_text_is_decoded_for_storage() -> None:
    """UTF-8 text is decoded; undecodable bytes and NUL (refused by PostgreSQL
    text columns) become U+FFFD."""
    assert read_all("220 Grüße\r\n".encode()) == [Reply(220, ("Grüße",))]
    assert read_all(b"220 a\xff\x00b\r\n") == [Reply(220, ("a\ufffd\ufffdb",))]


def test_line_at_the_limit_is_accepted() -> None:
    """A line of exactly 4 KiB (without its CRLF) is fine."""
    line = b"250 " + b"x" * (MAX_LINE_LENGTH - 4)
    assert read_all(line + b"\r\n") == [Reply(250, ("x" * (MAX_LINE_LENGTH - 4),))]


def test_line_over_limit_is_protocol_error() -> None:
    """A line over 4 KiB (without its CRLF) is a protocol error."""
    reader = ReplyReader()
    reader.feed(b"250 " + b"x" * (MAX_LINE_LENGTH - 3) + b"\r\n")
    with pytest.raises(ReplyError, match="line over 4096 bytes"):
        reader.next_reply()


def test_unterminated_long_line_is_protocol_error() -> None:
    """A line that has not ended but already exceeds 4 KiB is refused at once:
    the buffer cannot grow without bound."""
    reader = ReplyReader()
    reader.feed(b"220 " + b"x" * (MAX_LINE_LENGTH - 4))
    assert reader.next_reply() is None
    reader.feed(b"\r")  # a CR alone may still be the start of the line end
    assert reader.next_reply() is None
    reader.feed(b"y")
    with pytest.raises(ReplyError, match="line over 4096 bytes"):
        reader.next_reply()
    assert reader.buffered == 0


def test_reply_over_limit_is_protocol_error() -> None:
    """A reply of short continuation lines adding up to over 64 KiB is a
    protocol error, before any last line arrives."""
    reader = ReplyReader()
    line = b"250-" + b"x" * 60 + b"\r\n"
    count = MAX_REPLY_LENGTH // len(line) + 1
    with pytest.raises(ReplyError, match="reply over 65536 bytes"):
        for _ in range(count):
            reader.feed(line)
            assert reader.next_reply() is None
    assert reader.buffered == 0


def test_reply_just_under_limit_is_accepted() -> None:
    """Continuation lines summing to just under 64 KiB make one valid reply."""
    line = b"250-" + b"x" * 60 + b"\r\n"
    count = (MAX_REPLY_LENGTH - 16) // len(line)
    replies = read_all(line * count + b"250 end\r\n")
    assert len(replies) == 1
    assert len(replies[0].lines) == count + 1


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/1.1 400 Bad Request",
        b"SSH-2.0-OpenSSH_9.6",
        b"25 short",
        b"2500 four digits",
        b"250_underscore",
        b"25x nope",
        b"",
        b"650 not an SMTP code class",
        b"\x16\x03\x01\x02\x00",
    ],
)
def test_malformed_line_is_protocol_error(line: bytes) -> None:
    """A line that is not three digits (2-5 first) followed by space, hyphen
    or its end is not an SMTP reply."""
    reader = ReplyReader()
    reader.feed(line + b"\r\n")
    with pytest.raises(ReplyError, match="malformed reply line"):
        reader.next_reply()


def test_code_change_within_reply_is_protocol_error() -> None:
    """Every line of a multi-line reply carries the same code (RFC 5321 §4.2.1)."""
    reader = ReplyReader()
    reader.feed(b"250-one\r\n251 two\r\n")
    with pytest.raises(ReplyError, match="reply code changed from 250") as info:
        reader.next_reply()
    assert info.value.raw == "251 two"


def test_error_is_sticky() -> None:
    """After a protocol error the reader stays broken and holds no bytes."""
    reader = ReplyReader()
    reader.feed(b"garbage\r\n")
    with pytest.raises(ReplyError):
        reader.next_reply()
    reader.feed(b"250 ok\r\n")
    assert reader.buffered == 0
    with pytest.raises(ReplyError):
        reader.next_reply()


def test_take_buffer_returns_bytes_after_reply() -> None:
    """Bytes after a complete reply stay unread until taken, then are gone:
    after ``220`` to STARTTLS they must never be read as a reply."""
    reader = ReplyReader()
    reader.feed(b"220 go ahead\r\n250 injected\r\npartial")
    assert reader.next_reply() == Reply(220, ("go ahead",))
    assert reader.take_buffer() == b"250 injected\r\npartial"
    assert reader.buffered == 0
    assert reader.next_reply() is None
    assert reader.take_buffer() == b""


def test_take_buffer_includes_partial_reply_lines() -> None:
    """Continuation lines of an unfinished reply are returned raw too."""
    reader = ReplyReader()
    reader.feed(b"250-a\r\n250-b")
    assert reader.next_reply() is None
    assert reader.take_buffer() == b"250-a\r\n250-b"
    reader.feed(b"220 fresh\r\n")
    assert reader.next_reply() == Reply(220, ("fresh",))


def test_parse_line() -> None:
    """`parse_line` splits code, last-line flag and text."""
    assert parse_line(b"250-PIPELINING") == (250, False, "PIPELINING")
    assert parse_line(b"250 OK") == (250, True, "OK")
    assert parse_line(b"554") == (554, True, "")


def test_ehlo_keywords() -> None:
    """EHLO keywords are the upper-cased first word of each line after the first."""
    reply = Reply(
        250,
        (
            "mx.example.org Hello [192.0.2.1]",
            "pipelining",
            "SIZE 10240000",
            "StartTLS",
            "",
            "AUTH PLAIN LOGIN",
            "8BITMIME",
        ),
    )
    assert ehlo_keywords(reply) == ("PIPELINING", "SIZE", "STARTTLS", "AUTH", "8BITMIME")


def test_ehlo_keywords_single_line() -> None:
    """A one-line EHLO reply has no keywords (the first line is the greeting)."""
    assert ehlo_keywords(Reply(250, ("mx.example.org STARTTLS",))) == ()
