"""A strict JSON parser: duplicate keys, NaN/Infinity, absurd nesting, bad UTF-8 and lone
surrogate escapes are malformed requests (400), never a 500 or a silently chosen value."""

from __future__ import annotations

import codecs
import json
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32
# A \uD800-\uDFFF escape: valid JSON text, but alone (not in a high+low pair) it decodes to a
# string that cannot be encoded as UTF-8, so it would fail later in the database or the renderer.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class MalformedJSON(ValueError):
    """The text is not strict JSON; the message says why without quoting it."""


_Malformed = MalformedJSON


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise _Malformed("an object repeats a key")
        result[key] = value
    return result


def _no_constants(name: str):
    raise _Malformed(f"{name} is not valid JSON")


def _depth(text: str) -> int:
    """Deepest nesting of [ and { outside strings, in one linear scan (before json recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def _has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def loads_strict(raw: bytes) -> object:
    try:
        text = codecs.decode(raw, "utf-8")
    except UnicodeDecodeError:
        raise _Malformed("the body is not valid UTF-8") from None
    return loads_strict_text(text)


def loads_strict_text(text: str) -> object:
    """The one strict JSON reading, for API bodies and each line of a JSON Lines file alike."""
    if _depth(text) > MAX_DEPTH:
        raise _Malformed(f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _Malformed:
        raise
    except (ValueError, RecursionError):
        raise _Malformed("the body is not valid JSON") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise _Malformed("a string holds an unpaired surrogate escape")
    return value


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            return loads_strict(raw)
        except _Malformed as exc:
            raise ParseError(f"Malformed JSON: {exc}.") from None
