"""Tests for `crawler.domainlist` and `crawler.domainnames`: reading and normalising a list."""

from __future__ import annotations

import csv
import hashlib
import json
import time
import tracemalloc
from pathlib import Path

import pytest

from crawler.domainlist import Entry, Example, ListError, ListStats, read_domains
from crawler.domainnames import InvalidDomain, domain_hash, normalize_domain, parse_shard

DATA = Path("/work/shared/data")  # real public lists; never copied into the project
US_GOV = DATA / "us-federal-gov.csv"
DE_GOV = DATA / "de-federal-gov.csv"
UNIVERSITIES = DATA / "world-universities.json"


def needs(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not available")


def read_all(source: Path | bytes, **kwargs: object) -> tuple[list[Entry], ListStats]:
    domains = read_domains(source, **kwargs)  # type: ignore[arg-type]
    entries = list(domains)
    return entries, domains.stats


def domains_of(entries: list[Entry]) -> list[str]:
    return [e.domain for e in entries]


# --- normalisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "domain"),
    [
        ("example.org", "example.org"),
        ("  Example.ORG \r\n", "example.org"),
        ("example.org.", "example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.Example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("faß.de", "xn--fa-hia.de"),  # non-transitional: ß is kept, not mapped to "ss"
        ("example\u3002org", "example.org"),  # ideographic full stop, mapped by UTS-46
        ("https://www.example.org/path?q=1", "www.example.org"),
        ("HTTP://user:pw@Example.org:8080/x", "example.org"),
        ("https://bücher.example/", "xn--bcher-kva.example"),
        ("example.org:25", "example.org"),
        ("eisenbahn-unfalluntersuchung.de/", "eisenbahn-unfalluntersuchung.de"),
        ("a-b.c0.example", "a-b.c0.example"),
        ("123.example", "123.example"),  # an all-numeric label is fine, but not as TLD
    ],
)
def test_normalize_domain(raw: str, domain: str) -> None:
    """Case, one trailing dot, IDNs (UTS-46 to A-labels), URLs and ports are normalised."""
    assert normalize_domain(raw) == domain


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("exa mple.org", "bad character ' '"),
        ("under_score.org", "bad character '_'"),
        ("example.org:smtp", "bad character ':'"),
        ("a..example", "empty label"),
        (".example.org", "empty label"),
        ("example.org..", "empty label"),
        (".", "empty label"),
        ("localhost", "single label"),
        ("-foo.example", "hyphen at label start or end"),
        ("foo-.example", "hyphen at label start or end"),
        ("a" * 64 + ".example", "label too long"),
        (("a" * 63 + ".") * 4 + "org", "too long"),
        ("example.123", "numeric tld"),
        ("192.0.2.1", "ip address"),
        ("192.0.2.1.", "ip address"),
        ("192.0.2.1:25", "ip address"),
        ("2001:db8::1", "ip address"),
        ("[2001:db8::1]:25", "ip address"),
        ("https://192.0.2.1/", "ip address"),
    ],
)
def test_normalize_domain_invalid(raw: str, reason: str) -> None:
    """Invalid names are rejected with a short, stable reason."""
    with pytest.raises(InvalidDomain) as caught:
        normalize_domain(raw)
    assert caught.value.reason == reason


@pytest.mark.parametrize("raw", ["☃.example", "bü_cher.example", "bü cher.example"])
def test_normalize_domain_idna_errors(raw: str) -> None:
    """IDNA 2008 rejects symbols and non-LDH ASCII in a U-label; the reason says so."""
    with pytest.raises(InvalidDomain) as caught:
        normalize_domain(raw)
    assert caught.value.reason.startswith("idna: ")


# --- hash and shards -----------------------------------------------------------------


def test_domain_hash_is_stable() -> None:
    """The hash is pinned: changing it would re-partition the shards of a running run."""
    assert domain_hash("example.org") == 0x24DAB28D73E82DB5
    assert domain_hash("example.org") < 2**64


@pytest.mark.parametrize(("text", "shard"), [("2/8", (2, 8)), (" 1 / 1 ", (1, 1)), ("8/8", (8, 8))])
def test_parse_shard(text: str, shard: tuple[int, int]) -> None:
    assert parse_shard(text) == shard


@pytest.mark.parametrize("text", ["0/8", "9/8", "2", "2/0", "a/b", "-1/2", "1/2/3", "", "²/3"])
def test_parse_shard_errors(text: str) -> None:
    """A bad `-a shard=` fails with a message showing the expected form."""
    with pytest.raises(ValueError, match=r"K/N"):
        parse_shard(text)


def test_read_domains_checks_shard() -> None:
    with pytest.raises(ValueError, match=r"K/N"):
        read_domains(b"example.org\n", shard=(3, 2))


def test_shards_partition_the_list() -> None:
    """N shards of one list are disjoint, together equal the whole, and each counts
    every line the same way."""
    lines = [f"host{i}.example" for i in range(2000)] + ["HOST7.example", "bad_one.example"]
    data = ("\n".join(lines) + "\n").encode()
    whole, whole_stats = read_all(data)
    n = 5
    seen: set[str] = set()
    for k in range(1, n + 1):
        entries, stats = read_all(data, shard=(k, n))
        names = set(domains_of(entries))
        assert names and not names & seen  # disjoint, none empty
        seen |= names
        assert all(domain_hash(d) % n == k - 1 for d in names)
        assert (stats.values, stats.invalid, stats.duplicates) == (2002, 1, 1)
        assert stats.entries + stats.sharded_out == whole_stats.entries == 2000
    assert seen == set(domains_of(whole))


# --- plain text ----------------------------------------------------------------------


TEXT = (
    b"\xef\xbb\xbf# federal list, 2026\n"  # a UTF-8 BOM before the first comment
    b"\n"
    b"example.org\n"
    b"Example.ORG.\r\n"  # duplicate after normalisation
    b"  b\xc3\xbccher.example   # an IDN, with an inline comment\n"
    b"https://www.example.net/contact\n"
    b"   \t\n"
    b"not a domain\n"
    b"192.0.2.7\n"
    b"caf\xe9.example\n"  # Latin-1, not UTF-8
    b"# caf\xe9 in a comment is harmless\n"
    b"xn--bcher-kva.example\n"  # duplicate of the IDN above
    b"last.example"  # no final newline
)


def test_text_list_counts() -> None:
    """Comments, blank lines, invalid and duplicate lines are counted exactly."""
    entries, stats = read_all(TEXT, label="it-gov")
    assert entries == [
        Entry("example.org", "it-gov", None, 3),
        Entry("xn--bcher-kva.example", "it-gov", None, 5),
        Entry("www.example.net", "it-gov", None, 6),
        Entry("last.example", "it-gov", None, 13),
    ]
    assert stats.format == "text"
    assert stats.lines == 13
    assert stats.skipped == 4  # comment, blank, whitespace-only, comment
    assert stats.values == 9
    assert (stats.entries, stats.invalid, stats.duplicates, stats.no_weight) == (4, 3, 2, 0)
    assert [(e.line, e.reason) for e in stats.invalid_examples] == [
        (8, "bad character ' '"),
        (9, "ip address"),
        (10, "not UTF-8 (byte 0xe9 at column 4)"),
    ]
    assert [(e.line, e.raw) for e in stats.duplicate_examples] == [
        (4, "Example.ORG."),
        (12, "xn--bcher-kva.example"),
    ]
    assert stats.sha256 == hashlib.sha256(TEXT).hexdigest()


def test_stats_are_live_and_sha256_waits_for_the_end() -> None:
    """The caller can read the counts at any point; the hash only once all is read."""
    domains = read_domains(b"a.example\nb.example\nc.example\n")
    it = iter(domains)
    next(it)
    assert domains.stats.entries == 1
    assert domains.sha256 is None
    list(it)
    assert domains.stats.entries == 3
    assert domains.sha256 == hashlib.sha256(b"a.example\nb.example\nc.example\n").hexdigest()


def test_read_once() -> None:
    domains = read_domains(b"a.example\n")
    list(domains)
    with pytest.raises(RuntimeError, match="read once"):
        iter(domains)


def test_as_dict_is_json_serialisable() -> None:
    domains = read_domains(b"a.example\na.example\nbad_domain.example\n", name="list.txt")
    list(domains)
    record = domains.stats.as_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["source"] == "list.txt"
    assert record["invalid_examples"] == [
        {"line": 3, "raw": "bad_domain.example", "reason": "bad character '_'"}
    ]
    assert record["duplicate_examples"][0]["line"] == 2


def test_examples_are_capped() -> None:
    data = b"".join(b"bad_%d.example\n" % i for i in range(50))
    _, stats = read_all(data)
    assert stats.invalid == 50
    assert len(stats.invalid_examples) == 10
    assert stats.invalid_examples[0] == Example(1, "bad_0.example", "bad character '_'")


def test_local_file(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(TEXT)
    domains = read_domains(path)
    assert len(list(domains)) == 4
    assert domains.stats.source == str(path)
    assert domains.sha256 == hashlib.sha256(TEXT).hexdigest()


def test_text_line_starting_with_bracket_is_not_json() -> None:
    entries, stats = read_all(b"[::1]\nexample.org\n")
    assert domains_of(entries) == ["example.org"]
    assert stats.invalid_examples[0].reason == "ip address"


# --- CSV and TSV ---------------------------------------------------------------------


CSV = (
    "Domain name,Organization name,Country,Mail volume\n"
    "alpha.example,Alpha,IT,100\n"
    'beta.example,"Beta, Inc.", DE ,2.5\n'
    "gamma.example,Gamma,,\n"  # empty label and weight
    'delta.example,Delta,FR,"1,5"\n'  # unreadable weight
    "ALPHA.example,Alpha again,ES,999\n"  # duplicate: the first weight and label stand
    "epsilon.example,Epsilon,IT,n/a\n"
    "\n"
    "zeta.example,Zeta,IT,-3\n"  # a negative volume is no weight
    "bad domain.example,Bad,IT,1\n"
    ",No domain,IT,1\n"
)


def test_csv_label_and_weight_columns() -> None:
    entries, stats = read_all(
        CSV.encode(), label_column="country", weight_column="mail_volume", name="list.csv"
    )
    assert entries == [
        Entry("alpha.example", "IT", 100.0, 2),
        Entry("beta.example", "DE", 2.5, 3),
        Entry("gamma.example", None, None, 4),
        Entry("delta.example", "FR", None, 5),
        Entry("epsilon.example", "IT", None, 7),
        Entry("zeta.example", "IT", None, 9),
    ]
    assert stats.format == "csv"
    assert (stats.lines, stats.skipped, stats.values) == (11, 2, 9)
    assert (stats.invalid, stats.duplicates, stats.no_weight) == (2, 1, 4)
    assert [(e.line, e.reason) for e in stats.no_weight_examples] == [
        (4, "empty weight"),
        (5, "unreadable weight '1,5'"),
        (7, "unreadable weight 'n/a'"),
        (9, "unreadable weight '-3'"),
    ]
    assert [(e.line, e.reason) for e in stats.invalid_examples] == [
        (10, "bad character ' '"),
        (11, "empty"),
    ]


def test_csv_unbalanced_quote_does_not_swallow_lines() -> None:
    """One line is one row: an unclosed quote (as in the real federal list) ends at the
    end of its line instead of hiding the rows after it."""
    data = b'Domain name,Org\none.gov,"Half quoted\ntwo.gov,Fine\nthree.gov,"Also open\n'
    entries, stats = read_all(data)
    assert domains_of(entries) == ["one.gov", "two.gov", "three.gov"]
    assert stats.invalid == 0


def test_csv_undecodable_bytes() -> None:
    """Bad bytes in another cell leave the domain readable; in the domain they make
    the line invalid, with the byte named."""
    data = b"domain,org\nmuenchen.example,M\xfcnchen\nm\xfcnchen.example,M\n"
    entries, stats = read_all(data, label_column="org")
    assert entries == [Entry("muenchen.example", "M\ufffdnchen", None, 2)]
    assert stats.invalid_examples[0].reason == "not UTF-8 (byte 0xfc at column 2)"


def test_tsv_with_domain_name_header() -> None:
    data = b"id\tdomain_name\tcountry\n1\tuno.example\tIT\n2\tdos.example\tES\n3\tuno.example\tIT\n"
    entries, stats = read_all(data, label_column="Country")
    assert entries == [Entry("uno.example", "IT", None, 2), Entry("dos.example", "ES", None, 3)]
    assert (stats.format, stats.duplicates, stats.skipped) == ("tsv", 1, 1)


def test_semicolon_csv_with_comments_before_header() -> None:
    data = "# exported 2020\n\nDomain Name;Ort\nbund.de;Berlin\nbmi.bund.de;Berlin\n"
    entries, stats = read_all(data.encode())
    assert domains_of(entries) == ["bund.de", "bmi.bund.de"]
    assert [e.line for e in entries] == [4, 5]
    assert (stats.format, stats.skipped) == ("csv", 3)


def test_column_picks_another_header_cell() -> None:
    data = b"name,website\nAlpha,https://www.alpha.example/\nBeta,beta.example\n"
    entries, _ = read_all(data, column="Website")
    assert domains_of(entries) == ["www.alpha.example", "beta.example"]


def test_single_domain_column_header() -> None:
    entries, stats = read_all(b"domain\nalpha.example\n")
    assert domains_of(entries) == ["alpha.example"]
    assert (stats.format, stats.skipped) == ("csv", 1)


def test_headerless_list_by_column_number() -> None:
    """A list without header (e.g. Tranco's `rank,domain`) is read by 1-based position."""
    data = b"1,google.example\n2,Facebook.example\n3,google.example\n"
    entries, stats = read_all(data, column="2", weight_column="1")
    assert entries == [
        Entry("google.example", None, 1.0, 1),
        Entry("facebook.example", None, 2.0, 2),
    ]
    assert (stats.skipped, stats.duplicates) == (0, 1)


# --- JSON ----------------------------------------------------------------------------


UNIS = [
    {"name": "A", "domains": ["a.example", "A-alt.example"], "alpha_two_code": "IT"},
    {"name": "B", "domains": ["b.example"], "alpha_two_code": " de "},
    {"name": "C", "domains": [], "alpha_two_code": "FR"},
    {"name": "D", "domains": ["a.example", "d.example"], "alpha_two_code": "ES"},
    {"name": "E", "domains": "e.example", "alpha_two_code": ""},
    {"name": "F", "alpha_two_code": "US"},
    {"name": "G", "domains": ["bad domain", 7], "alpha_two_code": "US"},
]


def test_json_domains_lists_and_label_column() -> None:
    data = json.dumps(UNIS, indent=2).encode()
    entries, stats = read_all(data, label_column="alpha_two_code")
    assert [(e.domain, e.label) for e in entries] == [
        ("a.example", "IT"),
        ("a-alt.example", "IT"),
        ("b.example", "de"),
        ("d.example", "ES"),
        ("e.example", None),
    ]
    assert entries[0].line == 2  # where the first object starts
    assert stats.format == "json"
    assert stats.lines == data.count(b"\n") + 1
    assert (stats.values, stats.skipped, stats.invalid, stats.duplicates) == (9, 1, 3, 1)
    assert sorted(e.reason for e in stats.invalid_examples) == [
        "bad character ' '",
        "no 'domains' field",
        "not a string",
    ]


def test_json_strings_compact_and_in_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Elements split across reads are put together (here: 7-byte reads)."""
    monkeypatch.setattr("crawler.domainlist._CHUNK", 7)
    data = b'\xef\xbb\xbf[ "alpha.example","b\xc3\xbccher.example" ,\n"alpha.example", 42 ]\n'
    entries, stats = read_all(data)
    assert domains_of(entries) == ["alpha.example", "xn--bcher-kva.example"]
    assert [e.line for e in entries] == [1, 1]
    assert (stats.invalid, stats.duplicates) == (1, 1)
    assert stats.sha256 == hashlib.sha256(data).hexdigest()


def test_json_column_and_weight() -> None:
    data = json.dumps(
        [
            {"site": "https://one.example/", "volume": 3},
            {"site": "two.example", "volume": "x"},
            {"site": "three.example", "volume": True},
        ]
    ).encode()
    entries, stats = read_all(data, column="site", weight_column="Volume", name="u.json")
    assert [(e.domain, e.weight) for e in entries] == [
        ("one.example", 3.0),
        ("two.example", None),
        ("three.example", None),
    ]
    assert stats.no_weight == 2


def test_json_empty_array() -> None:
    entries, stats = read_all(b"[]")
    assert entries == []
    assert stats.values == 0


def test_json_broken_document() -> None:
    domains = read_domains(b'[{"domain": "a.example"},\n{"domain": "b.example"\n', name="x.json")
    with pytest.raises(ListError, match=r"x\.json: invalid JSON"):
        list(domains)


# --- errors the user makes -----------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(ListError, match=r"nope\.txt: cannot open"):
        read_domains(path)


def test_column_not_in_header() -> None:
    """Raised at once, naming the file, the column asked for and the columns seen."""
    with pytest.raises(ListError) as caught:
        read_domains(CSV.encode(), column="hostname", name="gov.csv")
    message = str(caught.value)
    assert "gov.csv" in message and "'hostname'" in message
    assert "'Domain name'" in message and "'Mail volume'" in message


def test_label_and_weight_columns_not_in_header() -> None:
    with pytest.raises(ListError, match=r"label_column 'land'.*'Country'"):
        read_domains(CSV.encode(), label_column="land")
    with pytest.raises(ListError, match="weight_column 'volume'"):
        read_domains(CSV.encode(), weight_column="volume")


def test_csv_without_domain_column() -> None:
    with pytest.raises(ListError, match=r"a\.csv: no domain column.*'site'.*'org'"):
        read_domains(b"site,org\nx.example,X\n", name="a.csv")
    with pytest.raises(ListError, match="no domain column"):
        read_domains(b"host\tname\n")  # tab-separated, no extension
    with pytest.raises(ListError, match="no domain column"):
        read_domains(b"fqdn\nx.example\n", name="one-column.csv")


def test_headerless_column_numbers_checked() -> None:
    with pytest.raises(ListError, match="column numbers 1 to 2"):
        read_domains(b"1,a.example\n", column="3")
    with pytest.raises(ListError, match="label_column='country'"):
        read_domains(b"1,a.example\n", column="2", label_column="country")


def test_json_not_an_array() -> None:
    with pytest.raises(ListError, match="not an array"):
        read_domains(b'{"domains": ["a.example"]}')
    with pytest.raises(ListError, match=r"l\.json\?v=2: not a JSON array"):
        read_domains(b"a.example\n", name="https://host.example/l.json?v=2")


def test_json_field_not_in_first_object() -> None:
    data = json.dumps(UNIS).encode()
    with pytest.raises(ListError, match=r"column 'hosts'.*'alpha_two_code'"):
        read_domains(data, column="hosts")
    with pytest.raises(ListError, match=r"no 'domain' or 'domains' field.*'host'"):
        read_domains(b'[{"host": "a.example"}]')
    with pytest.raises(ListError, match="array of objects"):
        read_domains(b'["a.example"]', label_column="country")


def test_label_and_label_column_together() -> None:
    with pytest.raises(ListError, match="not both"):
        read_domains(CSV.encode(), label="x", label_column="country")


def test_label_column_on_plain_text() -> None:
    with pytest.raises(ListError, match="no domain column"):
        read_domains(b"a.example\n", label_column="country")


# --- the real lists ------------------------------------------------------------------


@needs(US_GOV)
def test_us_federal_list() -> None:
    """One domain per physical line. This file has 43 lines with an unbalanced quote
    (a column was dropped from it), so the csv module sees far fewer rows."""
    lines = US_GOV.read_text(encoding="utf-8").splitlines()
    expected = [line.split(",", 1)[0].strip().lower() for line in lines[1:]]
    with US_GOV.open(newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) < len(expected)
    entries, stats = read_all(US_GOV)
    assert domains_of(entries) == list(dict.fromkeys(expected))
    assert (stats.lines, stats.entries, stats.invalid, stats.duplicates) == (
        len(lines),
        len(set(expected)),
        0,
        len(expected) - len(set(expected)),
    )
    assert stats.sha256 == hashlib.sha256(US_GOV.read_bytes()).hexdigest()


@needs(DE_GOV)
def test_de_federal_list() -> None:
    with DE_GOV.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # Independent normalisation: these are ASCII; one ends in "/", some have capitals.
    expected = [row["Domain Name"].strip().lower().rstrip("/") for row in rows]
    entries, stats = read_all(DE_GOV, label="de-gov")
    assert domains_of(entries) == list(dict.fromkeys(expected))
    assert {e.label for e in entries} == {"de-gov"}
    assert (stats.entries, stats.invalid, stats.duplicates) == (
        len(set(expected)),
        0,
        len(expected) - len(set(expected)),
    )


@needs(UNIVERSITIES)
def test_world_universities_list() -> None:
    """Some institutions share a domain: the first one's country stands."""
    institutions = json.loads(UNIVERSITIES.read_text(encoding="utf-8"))
    pairs = [(d.strip().lower(), u["alpha_two_code"]) for u in institutions for d in u["domains"]]
    first = dict(reversed(pairs))  # reversed: the first occurrence wins
    first = {d: first[d] for d in dict.fromkeys(d for d, _ in pairs)}
    entries, stats = read_all(UNIVERSITIES, label_column="alpha_two_code")
    assert [(e.domain, e.label) for e in entries] == list(first.items())
    assert stats.duplicates == len(pairs) - len(first) > 0
    assert (stats.values, stats.entries, stats.invalid) == (len(pairs), len(first), 0)


@needs(UNIVERSITIES)
def test_world_universities_shards() -> None:
    whole, _ = read_all(UNIVERSITIES)
    shards = [domains_of(read_all(UNIVERSITIES, shard=(k, 3))[0]) for k in (1, 2, 3)]
    assert sorted(d for shard in shards for d in shard) == sorted(domains_of(whole))


# --- streaming -----------------------------------------------------------------------


def test_million_lines_bounded_memory(tmp_path: Path) -> None:
    """A 10^6-line file is streamed with bounded memory. The dedup set of 64-bit
    digests is most of it (about 70 MiB); a set of these names would alone take
    96 MiB, and holding the entries several times that."""
    n = 1_000_000
    path = tmp_path / "big.txt"
    with path.open("w") as f:
        for i in range(n):
            if i % 1000 == 0:
                f.write("# comment\n")
            elif i % 100 == 0:
                f.write(f"host{i - 1}.example\n")  # a duplicate of the line before
            else:
                f.write(f"host{i}.example\n")
    comments, duplicates = n // 1000, n // 100 - n // 1000
    started = time.monotonic()
    tracemalloc.start()
    try:
        domains = read_domains(path)
        count = sum(1 for _ in domains)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stats = domains.stats
    assert (stats.lines, stats.skipped, stats.duplicates) == (n, comments, duplicates)
    assert count == stats.entries == n - comments - duplicates
    assert peak < 90 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert time.monotonic() - started < 60
