"""Reading a domain list: plain text, CSV/TSV or JSON, streamed.

`read_domains()` detects the format and checks the columns asked for before
anything is yielded (`ListError`), then yields one normalised, deduplicated
`Entry` per domain while `ListStats` counts every line: comments, invalid
names, duplicates, missing weights, domains left to other shards. Pure: no
network, no Scrapy; a list fetched by URL comes in as bytes.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import ipaddress
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, NamedTuple

import idna

from crawler.digests import DigestSet

log = logging.getLogger(__name__)

# Header or JSON field names taken as the domain column, compared through _key().
DOMAIN_COLUMNS = frozenset({"domain", "domains", "domainname"})
MAX_EXAMPLES = 10
_RAW_CHARS = 200  # an example keeps at most this much of its line
_CHUNK = 1 << 16  # bytes per read of a JSON list
_MAX_JSON_ITEM = 16 << 20  # an array element this big is a broken document, not a domain
_DELIMITERS = "\t,;"  # sniffing order: the first wins a tie

# A hostname (RFC 1123 §2.1, RFC 1035 §2.3.1): labels of 1-63 letters, digits
# and hyphens, no hyphen at either end, at least two labels, TLD not all-numeric.
_HOSTNAME = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?![0-9]+\Z)(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_BAD_CHAR = re.compile(r"[^a-z0-9.-]")
_JSON_ARRAY = re.compile(r'\[\s*[{"\]]')  # "[::1]" is a text line, not JSON
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*", re.ASCII)
_WS = re.compile(r"[ \t\r\n]*")
_MISSING = object()


class ListError(ValueError):
    """The list cannot be read as asked: the user's fault, reported at the start."""


class InvalidDomain(ValueError):
    """A value that is not a usable domain name; `reason` is short and stable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Entry:
    """One domain to scan, as the list gave it."""

    domain: str  # lower-case, A-labels, no trailing dot
    label: str | None
    weight: float | None  # None: no weight column, or an empty or unreadable cell
    line: int  # 1-based line of the list (for JSON, where its object starts)


@dataclass(frozen=True, slots=True)
class Example:
    """A line worth showing the user: where, what it said (truncated), and why."""

    line: int
    raw: str
    reason: str


@dataclass(slots=True)
class ListStats:
    """Counts over the whole list, filled in while it is read.

    Every shard counts the same lines: each domain value met is exactly one
    of entry, invalid, duplicate or sharded_out.
    """

    source: str
    format: str  # "text", "csv", "tsv" or "json"
    lines: int = 0  # physical lines read
    skipped: int = 0  # blank, comment and header lines; JSON objects with an empty list
    entries: int = 0  # yielded (this shard)
    invalid: int = 0
    duplicates: int = 0
    sharded_out: int = 0  # valid, first seen, left to another shard
    no_weight: int = 0  # first-seen domains (any shard) with an empty or unreadable weight
    sha256: str | None = None  # of every byte, set once the list has been read to its end
    size: int | None = None  # bytes in the list, when known before reading it
    invalid_examples: list[Example] = field(default_factory=list)
    duplicate_examples: list[Example] = field(default_factory=list)
    no_weight_examples: list[Example] = field(default_factory=list)

    @property
    def values(self) -> int:
        """Domain values met: the same in every shard."""
        return self.entries + self.invalid + self.duplicates + self.sharded_out

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values, for the crawl's record."""
        return {**asdict(self), "values": self.values}

    def summary(self) -> str:
        return (
            f"{self.source} ({self.format}): {self.lines} lines, {self.entries} domains, "
            f"{self.invalid} invalid, {self.duplicates} duplicates, "
            f"{self.no_weight} without weight, {self.sharded_out} in other shards"
        )


class _Layout(NamedTuple):
    """Where the values are: column indexes (CSV/TSV) or field names (JSON)."""

    format: str  # "text", "csv" or "json"
    delimiter: str = ","
    header: bool = True
    domain: int | str | None = None  # JSON: None takes `domain`/`domains` or string items
    label: int | str | None = None
    weight: int | str | None = None


class _Record(NamedTuple):
    """One raw domain value, before normalisation."""

    line: int
    value: str
    label: str | None = None
    weight: object = None  # the cell as found
    error: str | None = None  # known invalid before normalisation


# --- normalisation ---------------------------------------------------------------


def normalize_domain(raw: str) -> str:
    """A domain as DNS is asked for it: lower-case A-labels, no trailing dot.

    A URL or `host:port` is reduced to its host. Raises `InvalidDomain`.
    """
    name = raw.strip()
    if name.isascii():  # fast path: most lines are already plain hostnames
        lowered = name if name.islower() else name.lower()
        if len(lowered) <= 253 and _HOSTNAME.match(lowered):
            return lowered
    name = _host_part(name)
    if not name:
        raise InvalidDomain("empty")
    if name.endswith("."):  # one trailing dot: the root, same domain
        name = name[:-1]
    if _is_ip(name):
        raise InvalidDomain("ip address")
    if not name:
        raise InvalidDomain("empty label")
    # Only ASCII is lower-cased here: UTS-46 maps the rest (str.lower() differs,
    # e.g. on a final sigma).
    name = name.lower() if name.isascii() else _to_alabel(name)
    if len(name) > 253:  # RFC 1035 §2.3.4, without the trailing dot
        raise InvalidDomain("too long")
    if not _HOSTNAME.match(name):
        raise InvalidDomain(_why_invalid(name))
    return name


def _host_part(text: str) -> str:
    """The host of a URL (`https://u@host:443/path`), `host/path` or `host:port`."""
    if "://" in text:
        text = text.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        text = text.rpartition("@")[2]
    else:
        text = text.split("/", 1)[0]
    if text.startswith("["):  # an IPv6 literal, possibly with a port
        return text
    host, colon, port = text.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host
    return text


def _is_ip(name: str) -> bool:
    if not (name[-1:].isdigit() or ":" in name or name.startswith("[")):
        return False  # fast path: an IP address ends in a digit or has a colon
    if name.startswith("[") and "]" in name:
        name = name[1 : name.index("]")]
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _to_alabel(name: str) -> str:
    # UTS-46 non-transitional (IDNA 2008 as browsers do it): "faß.de" keeps its ß.
    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except UnicodeError as e:  # idna.IDNAError and its subclasses
        raise InvalidDomain(f"idna: {e}") from None


def _why_invalid(name: str) -> str:
    """The reason an ASCII name failed _HOSTNAME."""
    bad = _BAD_CHAR.search(name)
    if bad:
        return f"bad character {bad.group()!r}"
    labels = name.split(".")
    for label in labels:
        if not label:
            return "empty label"
        if len(label) > 63:
            return "label too long"
        if label.startswith("-") or label.endswith("-"):
            return "hyphen at label start or end"
    if len(labels) < 2:
        return "single label"
    return "numeric tld"


def domain_hash(domain: str) -> int:
    """A stable 64-bit hash of a normalised domain: it decides the shard.

    Not Python's hash(): that is salted per process, and every crawl of a
    sharded run must agree on which shard owns a domain.
    """
    digest = hashlib.blake2b(domain.encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` as given to `-a shard=`: this crawl takes the K-th (1-based) of N parts."""
    match = _SHARD.fullmatch(text)
    if not match:
        raise ValueError(f"shard must be K/N with 1 <= K <= N, e.g. 2/8; got {text!r}")
    return _check_shard((int(match[1]), int(match[2])))


def _check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    k, n = shard
    if not 1 <= k <= n:
        raise ValueError(f"shard must be K/N with 1 <= K <= N, e.g. 2/8; got {k}/{n}")
    return k, n


# --- the public entry point --------------------------------------------------------


class DomainList:
    """The entries of one list, read once; `stats` fill in while it is read."""

    def __init__(
        self,
        source: str | os.PathLike[str] | bytes,
        name: str,
        layout: _Layout,
        label: str | None,
        shard: tuple[int, int] | None,
    ) -> None:
        self.name = name
        fmt = "tsv" if layout.format == "csv" and layout.delimiter == "\t" else layout.format
        self.stats = ListStats(source=name, format=fmt)
        self._source = source
        self._layout = layout
        self._label = label
        self._shard = shard
        self._used = False
        self._file: BinaryIO | None = None

    def bytes_read(self) -> int | None:
        """How far the streaming read has come (a little ahead: the file's buffer), for
        progress; asked of the file, so reading a line costs nothing more."""
        try:
            return self._file.tell() if self._file is not None else None
        except ValueError:  # closed: read to its end
            return self.stats.size

    @property
    def sha256(self) -> str | None:
        """Hex digest of the bytes read; None until the list has been read to its end."""
        return self.stats.sha256

    def __iter__(self) -> Iterator[Entry]:
        if self._used:
            raise RuntimeError(f"{self.name}: a DomainList is read once; call read_domains() again")
        self._used = True
        return self._read()

    def _read(self) -> Iterator[Entry]:
        digest = hashlib.sha256()
        layout, stats = self._layout, self.stats
        with _open(self._source, self.name) as f:
            stats.size, self._file = _size(f), f
            if layout.format == "json":
                items = _json_items(_json_chunks(f, stats, digest), self.name)
                records = _json_records(items, layout, stats)
            elif layout.format == "csv":
                records = _table_records(f, layout, stats, digest)
            else:
                records = _text_records(f, stats, digest)
            weighted = layout.weight is not None
            yield from _entries(records, stats, self._label, weighted, self._shard)
        stats.sha256 = digest.hexdigest()
        _log_summary(stats)


def _size(f: BinaryIO) -> int | None:
    try:
        return os.fstat(f.fileno()).st_size
    except (OSError, io.UnsupportedOperation):  # bytes in memory
        return len(f.getbuffer()) if isinstance(f, io.BytesIO) else None


def read_domains(
    source: str | os.PathLike[str] | bytes,
    *,
    column: str | None = None,
    label: str | None = None,
    label_column: str | None = None,
    weight_column: str | None = None,
    shard: tuple[int, int] | None = None,
    name: str | None = None,
) -> DomainList:
    """Open a list (a path, or the bytes of a fetched one) and check it can be read as asked.

    `column`, `label_column` and `weight_column` name a header cell or JSON field
    (case, spaces and underscores ignored); a number as `column` picks a
    1-based position in a list without header (e.g. Tranco's `rank,domain`).
    `name` is used in messages, as the source in the stats and, for bytes, for
    its extension. Raises `ListError` before anything is read when the list
    cannot be opened or lacks the columns asked for.
    """
    in_memory = isinstance(source, (bytes, bytearray, memoryview))
    if name is None:
        name = "<bytes>" if in_memory else os.fspath(source)
    if label is not None and label_column is not None:
        raise ListError(f"{name}: give label= or label_column=, not both")
    if shard is not None:
        shard = _check_shard(shard)
    with _open(source, name) as f:
        layout = _detect(f, name, _Asked(column, label_column, weight_column))
    fixed = (label.strip() or None) if label is not None else None
    return DomainList(source, name, layout, fixed, shard)


# --- format detection --------------------------------------------------------------


def _open(source: str | os.PathLike[str] | bytes, name: str) -> BinaryIO:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source)
    try:
        return open(source, "rb")  # the caller closes it
    except OSError as e:
        raise ListError(f"{name}: cannot open the list: {e.strerror or e}") from e


class _Asked(NamedTuple):
    """The columns the user named: header cells, JSON fields, or 1-based numbers."""

    column: str | None
    label_column: str | None
    weight_column: str | None


def _detect(f: BinaryIO, name: str, asked: _Asked) -> _Layout:
    raw = f.read(_CHUNK)
    f.seek(0)
    if b"\x00" in raw:  # no text list has a NUL: a compressed file, a database, a program
        raise ListError(
            f"{name}: a binary file (a NUL byte at offset {raw.index(0)}), not a list: give "
            "plain text, CSV/TSV or JSON (decompress a .gz or .zip first)"
        )
    head = raw.decode("utf-8-sig", "replace").lstrip()
    if head.startswith("{"):
        raise ListError(f"{name}: JSON is not an array: it starts with '{{'")
    if _JSON_ARRAY.match(head):
        return _json_layout(f, name, asked)
    if _suffix(name) == ".json":
        raise ListError(f"{name}: not a JSON array (a .json list must start with '[')")
    first = _first_data_line(f)
    if first is None:
        return _Layout("text")
    return _table_layout(first, name, asked)


def _suffix(name: str) -> str:
    path = name.split("?", 1)[0].split("#", 1)[0]  # a URL's query says nothing of the format
    return os.path.splitext(path)[1].lower()


def _first_data_line(f: BinaryIO) -> str | None:
    for raw in f:
        text = raw.decode("utf-8", "replace").lstrip("\ufeff").strip()
        if text and not text.startswith("#"):
            return text
    return None


def _key(name: str) -> str:
    """`Domain name`, `domain_name` and `DomainName` are the same column."""
    return re.sub(r"[\s_-]+", "", name).casefold()


def _find(names: list[str], wanted: str) -> int | None:
    if wanted in names:
        return names.index(wanted)
    keys = [_key(n) for n in names]
    return keys.index(_key(wanted)) if _key(wanted) in keys else None


def _find_domain(names: list[str]) -> str | None:
    return next((n for n in names if _key(n) in DOMAIN_COLUMNS), None)


def _locate(names: list[str], asked: _Asked, name: str, where: str) -> list[int | None]:
    """The index in `names` of each column asked for."""
    found: list[int | None] = []
    for arg, wanted in zip(asked._fields, asked, strict=True):
        index = None if wanted is None else _find(names, wanted)
        if wanted is not None and index is None:
            raise ListError(f"{name}: no {arg} {wanted!r} in {where}; seen: {_seen(names)}")
        found.append(index)
    return found


def _seen(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names[:30]) or "none"


def _sniff(line: str) -> str | None:
    counts = {d: line.count(d) for d in _DELIMITERS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else None


def _table_layout(line: str, name: str, asked: _Asked) -> _Layout:
    """CSV/TSV when the first data line is a header naming a domain column (or
    `column=` is given); plain text otherwise."""
    sniffed = _sniff(line.partition("#")[0])  # "a.org # x, y" is text
    delimiter = sniffed or ","
    cells = _split(line, delimiter)
    if asked.column and asked.column.strip().isdigit() and _find(cells, asked.column) is None:
        return _headerless(cells, delimiter, name, asked)
    if asked.column is None:
        column = _find_domain(cells)
        if column is None:
            tabular = _suffix(name) in (".csv", ".tsv") and not _is_domain(cells[0])
            if sniffed or asked.label_column or asked.weight_column or tabular:
                raise ListError(
                    f"{name}: no domain column in the header (seen: {_seen(cells)}); "
                    "name it with column=, or column=N for a list without header"
                )
            return _Layout("text")
        asked = asked._replace(column=column)
    return _Layout("csv", delimiter, True, *_locate(cells, asked, name, "the header"))


def _headerless(cells: list[str], delimiter: str, name: str, asked: _Asked) -> _Layout:
    indexes: list[int | None] = []
    for arg, wanted in zip(asked._fields, asked, strict=True):
        if wanted is not None and not (wanted.strip().isdigit() and 1 <= int(wanted) <= len(cells)):
            raise ListError(
                f"{name}: {arg}={wanted!r}: a list without header takes column numbers "
                f"1 to {len(cells)}; first line: {_seen(cells)}"
            )
        indexes.append(None if wanted is None else int(wanted) - 1)
    return _Layout("csv", delimiter, False, *indexes)


def _is_domain(text: str) -> bool:
    try:
        normalize_domain(text)
    except InvalidDomain:
        return False
    return True


def _json_layout(f: BinaryIO, name: str, asked: _Asked) -> _Layout:
    """Check the fields asked for against the first element, before any entry."""
    scratch = ListStats(source=name, format="json")
    first = next(_json_items(_json_chunks(f, scratch, hashlib.sha256()), name), None)
    item = first[1] if first else None
    if not isinstance(item, dict):
        if item is not None and any(asked):
            raise ListError(
                f"{name}: column names need an array of objects; first element: {_short(item)}"
            )
        return _Layout("json", "", True, *asked)  # an empty array, or one of strings
    keys = list(item)
    if asked.column is None:
        column = _find_domain(keys)
        if column is None:
            raise ListError(
                f"{name}: the first object has no 'domain' or 'domains' field "
                f"(seen: {_seen(keys)}); name one with column="
            )
        asked = asked._replace(column=column)
    found = _locate(keys, asked, name, "the first object")
    return _Layout("json", "", True, *(None if i is None else keys[i] for i in found))


# --- reading ---------------------------------------------------------------------


def _hashed(f: BinaryIO, digest: Any) -> Iterator[bytes]:
    """The physical lines of `f`, every byte hashed, a UTF-8 BOM dropped."""
    first = next(f, b"")
    digest.update(first)
    if first:
        yield first.removeprefix(codecs.BOM_UTF8)
    for raw in f:
        digest.update(raw)
        yield raw


def _decode(raw: bytes) -> str:
    # Bad bytes become U+FFFD so that a comment or another cell still reads;
    # the value is invalid only when they fall in the domain (_utf8_error).
    return raw.decode("utf-8", "replace")


def _utf8_error(raw: bytes) -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
    return None  # a real U+FFFD, which IDNA rejects


def _text_records(f: BinaryIO, stats: ListStats, digest: Any) -> Iterator[_Record]:
    for number, raw in enumerate(_hashed(f, digest), 1):
        stats.lines = number
        text = _decode(raw)
        value = (text.partition("#")[0] if "#" in text else text).strip()  # no domain has a '#'
        if not value:
            stats.skipped += 1
            continue
        yield _Record(number, value, None, None, _utf8_error(raw) if "\ufffd" in value else None)


def _split(line: str, delimiter: str) -> list[str]:
    # One physical line is one row. The csv module would let an unbalanced
    # quote swallow the lines after it: the dotgov-derived federal list has 43
    # such lines, which would hide 500 domains inside one cell. Domain lists
    # have no multi-line cells.
    line = line.rstrip("\r\n")
    if '"' not in line:
        return [cell.strip() for cell in line.split(delimiter)]
    try:
        cells = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:  # a NUL or stray bytes past the first chunk: the domain is invalid
        cells = line.split(delimiter)
    return [cell.strip() for cell in cells]


def _table_records(
    f: BinaryIO, layout: _Layout, stats: ListStats, digest: Any
) -> Iterator[_Record]:
    header = layout.header
    for number, raw in enumerate(_hashed(f, digest), 1):
        stats.lines = number
        text = _decode(raw)
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            stats.skipped += 1
            continue
        if header:  # the first line neither blank nor a comment
            header = False
            stats.skipped += 1
            continue
        cells = _split(text, layout.delimiter)
        value = _cell(cells, layout.domain) or ""
        label = _label(_cell(cells, layout.label))
        error = _utf8_error(raw) if "\ufffd" in value else None
        yield _Record(number, value, label, _cell(cells, layout.weight), error)


def _cell(cells: list[str], index: int | str | None) -> str | None:
    if not isinstance(index, int):
        return None
    return cells[index] if index < len(cells) else ""


def _json_chunks(f: BinaryIO, stats: ListStats, digest: Any) -> Iterator[str]:
    # Bad bytes become U+FFFD, which IDNA then rejects in a domain.
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    last = b""
    while chunk := f.read(_CHUNK):
        digest.update(chunk)
        stats.lines += chunk.count(b"\n")
        last = chunk
        yield decoder.decode(chunk)
    if last and not last.endswith(b"\n"):
        stats.lines += 1
    yield decoder.decode(b"", final=True)


def _json_items(chunks: Iterator[str], name: str) -> Iterator[tuple[int, Any]]:
    """(line, element) for each element of a top-level JSON array.

    Read chunk by chunk: json.load() would hold every object of a big list.
    """
    decoder = json.JSONDecoder()
    buf, pos, line = "", 0, 1  # `line` is the line of buf[pos]
    state = "open"  # then "first" (element or "]"), "sep" ("," or "]"), "item", "done"
    eof = False
    while True:
        while state != "done":
            end = _WS.match(buf, pos).end()
            line += buf.count("\n", pos, end)
            pos = end
            if pos == len(buf):
                break
            char = buf[pos]
            if state == "open":
                state, pos = "first", pos + 1  # _detect saw the "["
            elif char == "]" and state in ("first", "sep"):
                state = "done"
            elif state == "sep":
                if char != ",":
                    raise ListError(f"{name}: invalid JSON at line {line}: expected ',' or ']'")
                state, pos = "item", pos + 1
            else:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    if eof or len(buf) - pos > _MAX_JSON_ITEM:
                        at = line + buf.count("\n", pos, e.pos)
                        raise ListError(f"{name}: invalid JSON at line {at}: {e.msg}") from None
                    break  # the element continues in the next chunk
                if end == len(buf) and not eof:
                    break  # a number may go on in the next chunk
                yield line, item
                line += buf.count("\n", pos, end)
                pos, state = end, "sep"
        if eof:
            if state != "done":
                raise ListError(f"{name}: invalid JSON: the array is not closed (line {line})")
            return
        chunk = next(chunks, None)
        if chunk is None:
            eof = True
        elif state != "done":  # after "]", read on only so that every byte is hashed
            buf, pos = buf[pos:] + chunk, 0


def _json_records(
    items: Iterable[tuple[int, Any]], layout: _Layout, stats: ListStats
) -> Iterator[_Record]:
    for line, item in items:
        if isinstance(item, str):
            yield _Record(line, item)
            continue
        if not isinstance(item, dict):
            yield _Record(line, _short(item), error="not an object")
            continue
        value = _field(item, layout.domain)
        label = _label(_field(item, layout.label)) if layout.label else None
        weight = _field(item, layout.weight) if layout.weight else None
        values = value if isinstance(value, list) else [value]
        if not values:
            stats.skipped += 1
        for v in values:
            if isinstance(v, str):
                yield _Record(line, v, label, weight)
            elif v is _MISSING or v is None:
                yield _Record(line, _short(item), error=f"no {layout.domain or 'domain'!r} field")
            else:
                yield _Record(line, _short(v), error="not a string")


def _field(item: dict[str, Any], key: int | str | None) -> Any:
    if isinstance(key, str) and key in item:
        return item[key]
    wanted = {_key(key)} if isinstance(key, str) else DOMAIN_COLUMNS
    return next((v for k, v in item.items() if _key(k) in wanted), _MISSING)


def _short(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:_RAW_CHARS]


def _label(value: Any) -> str | None:
    if value is None or value is _MISSING:
        return None
    return str(value).strip() or None


def _weight(cell: Any) -> float | None:
    """A weight is a finite, non-negative number (e.g. mail volume); else none."""
    if isinstance(cell, bool):
        return None
    if isinstance(cell, (int, float)):
        weight = float(cell)
    elif isinstance(cell, str):
        try:
            weight = float(cell.strip())
        except ValueError:
            return None
    else:
        return None
    return weight if math.isfinite(weight) and weight >= 0 else None


def _why_no_weight(cell: Any) -> str:
    if cell is None or cell is _MISSING or (isinstance(cell, str) and not cell.strip()):
        return "empty weight"
    return f"unreadable weight {str(cell)[:40]!r}"


def _entries(
    records: Iterable[_Record],
    stats: ListStats,
    fixed_label: str | None,
    weighted: bool,
    shard: tuple[int, int] | None,
) -> Iterator[Entry]:
    # Dedup keeps the 64-bit digests of domain_hash(), not the names, in a compact
    # set (crawler/digests.py): 16 MB at 10^6 domains where the names took 100 MB
    # and more. A collision would drop one domain as a duplicate; the chance of any
    # among n domains is about n²/2^65: 3e-8 at 10^6, 3e-4 at 10^8 (all of .com),
    # far below the noise of the lists themselves.
    seen = DigestSet()
    k, n = shard or (1, 1)
    for rec in records:
        try:
            if rec.error:
                raise InvalidDomain(rec.error)
            domain = normalize_domain(rec.value)
        except InvalidDomain as e:
            stats.invalid += 1
            _note(stats.invalid_examples, rec.line, rec.value, e.reason)
            continue
        digest = domain_hash(domain)
        if not seen.add(digest):  # the first line's label and weight stand
            stats.duplicates += 1
            _note(stats.duplicate_examples, rec.line, rec.value, f"duplicate of {domain}")
            continue
        weight = _weight(rec.weight) if weighted else None
        if weighted and weight is None:
            stats.no_weight += 1
            _note(stats.no_weight_examples, rec.line, rec.value, _why_no_weight(rec.weight))
        if n > 1 and digest % n != k - 1:
            stats.sharded_out += 1
            continue
        stats.entries += 1
        yield Entry(domain, fixed_label if fixed_label is not None else rec.label, weight, rec.line)


def _note(examples: list[Example], line: int, raw: str, reason: str) -> None:
    if len(examples) < MAX_EXAMPLES:
        examples.append(Example(line, raw[:_RAW_CHARS], reason))


def _log_summary(stats: ListStats) -> None:
    log.info("%s", stats.summary())
    for level, what, examples in (
        (logging.WARNING, "invalid", stats.invalid_examples),
        (logging.INFO, "duplicate", stats.duplicate_examples),
        (logging.WARNING, "without weight", stats.no_weight_examples),
    ):
        if examples:
            shown = "; ".join(f"line {e.line} {e.raw!r}: {e.reason}" for e in examples)
            log.log(level, "%s: %s, e.g. %s", stats.source, what, shown)
