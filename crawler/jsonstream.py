"""The elements of a top-level JSON array, read chunk by chunk, each with its line.

Hand-written rather than ijson: the list reader records the line of every domain
(`domains.line`), which a token-stream parser does not give. Pure and bounded: an element over
16 MiB is a broken document, not a domain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_WS = re.compile(r"[ \t\r\n]*")
_MAX_JSON_ITEM = 16 << 20  # an array element this big is a broken document, not a domain


class JsonError(ValueError):
    """The document is not a JSON array of elements; the message names the line."""


def array_items(chunks: Iterator[str]) -> Iterator[tuple[int, Any]]:
    """(line, element) for each element of a top-level JSON array, whose `[` the
    caller has seen at the start of the first chunk (after any white space).

    Read chunk by chunk: json.load() would hold every object of a big list. Raises
    `JsonError` at the first thing that is not the array.
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
                    raise JsonError(f"invalid JSON at line {line}: expected ',' or ']'")
                state, pos = "item", pos + 1
            else:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    if eof or len(buf) - pos > _MAX_JSON_ITEM:
                        at = line + buf.count("\n", pos, e.pos)
                        raise JsonError(f"invalid JSON at line {at}: {e.msg}") from None
                    break  # the element continues in the next chunk
                if end == len(buf) and not eof:
                    break  # a number may go on in the next chunk
                yield line, item
                line += buf.count("\n", pos, end)
                pos, state = end, "sep"
        if eof:
            if state != "done":
                raise JsonError(f"invalid JSON: the array is not closed (line {line})")
            return
        chunk = next(chunks, None)
        if chunk is None:
            eof = True
        elif state != "done":  # after "]", read on only so that every byte is hashed
            buf, pos = buf[pos:] + chunk, 0
