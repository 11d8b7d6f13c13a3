"""Feed exporters for the crawl's items: `scrapy crawl tld_mx -o items.jsonl` (or .json,
.csv) writes what the spider and pipelines saw, readably.

The items are dataclasses holding bytes (certificates as DER), tuples and nested facts,
which Scrapy's own exporters cannot write ("Object of type bytes is not JSON
serializable"). These serialise each field to plain JSON values: nested dataclasses as
objects, bytes as hex, tuples as arrays; CSV cells hold the nested values as JSON. Each
record says which item it is (`item`). Registered in `FEED_EXPORTERS`, so a crawl
without a feed pays nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from scrapy.exporters import CsvItemExporter, JsonItemExporter, JsonLinesItemExporter

from crawler.items import DomainItem, ProbeItem, ProtocolsItem, StoredProbesItem, TargetsItem
from crawler.policy import DomainPolicyItem

KIND = "item"  # the item's class name, first in every record
# A CSV file has one header: every item type's fields, in order, after `item`.
ITEMS = (DomainItem, ProbeItem, StoredProbesItem, TargetsItem, ProtocolsItem, DomainPolicyItem)
CSV_COLUMNS = [KIND, *dict.fromkeys(f.name for cls in ITEMS for f in fields(cls))]


def plain(value: Any) -> Any:
    """`value` as JSON values: dataclasses as objects, bytes as hex, tuples as arrays."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


class _PlainFields:
    """Every field as plain JSON values, after the item's kind."""

    def serialize_field(self, field: Any, name: str, value: Any) -> Any:
        return plain(value)

    def get_serialized_fields(
        self, item: Any, default_value: Any = None, include_empty: bool | None = None
    ) -> Iterable[tuple[str, Any]]:
        yield KIND, type(item).__name__
        serialized = super().get_serialized_fields(item, default_value, include_empty)  # type: ignore[misc]
        yield from ((name, value) for name, value in serialized if name != KIND)


class JsonLinesExporter(_PlainFields, JsonLinesItemExporter):
    pass


class JsonExporter(_PlainFields, JsonItemExporter):
    pass


class CsvExporter(_PlainFields, CsvItemExporter):
    def __init__(self, file: Any, **kwargs: Any) -> None:
        # Items of every kind share one header (FEED_EXPORT_FIELDS still chooses).
        kwargs["fields_to_export"] = kwargs.get("fields_to_export") or CSV_COLUMNS
        super().__init__(file, **kwargs)

    def serialize_field(self, field: Any, name: str, value: Any) -> Any:
        value = plain(value)
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
