"""The request body as the API accepts it: bytes from the event, UTF-8 text, then strict JSON.

API Gateway hands over whatever the client sent: base64 when it judged the body binary, text
otherwise. Anything that is not a sound JSON document (bad base64, bytes that are not UTF-8,
duplicate keys, nesting or numbers no client needs, NaN/Infinity) is the client's mistake and
answers 400 ``invalid_json``, never a parser exception turned 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from dnd_rag.errors import InvalidJsonError, PayloadTooLargeError

MAX_BODY_BYTES = 16 * 1024
MAX_DEPTH = 32  # the request schema is flat; this is generous and keeps parsers off deep recursion
MAX_NUMBER_CHARS = 64  # far above any real k; stops the thousands-of-digits integer conversions


def body_bytes(event: dict[str, Any]) -> bytes:
    """The raw body, base64-decoded when API Gateway encoded it; 400 if that encoding is broken."""
    body = event.get("body")
    if not body:
        return b""
    if not isinstance(body, str):
        raise InvalidJsonError("The request body is not valid JSON.", reason="body is not a string")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidJsonError("The request body is not valid JSON.", reason="invalid base64 body") from None
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no byte sequence a client could have sent
        raise InvalidJsonError("The request body is not valid JSON.", reason="body has lone surrogates") from None


def body_text(event: dict[str, Any]) -> str:
    """The body as UTF-8 text: 413 over the limit, 400 if it is not UTF-8."""
    raw = body_bytes(event)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJsonError("The request body is not valid UTF-8 JSON.", reason="body is not UTF-8") from None


def strict_json(text: str) -> Any:
    """``json.loads`` for untrusted input: one meaning per document, bounded work, standard JSON only."""
    if _depth(text) > MAX_DEPTH:
        raise InvalidJsonError(f"The request body nests deeper than {MAX_DEPTH} levels.", reason="json too deep")
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_int=_bounded(int),
            parse_float=_bounded(float),
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError:
        raise InvalidJsonError("The request body is not valid JSON.", reason="json syntax") from None
    except RecursionError:  # defence in depth: _depth already refuses what could recurse this far
        raise InvalidJsonError("The request body is not valid JSON.", reason="json recursion") from None


def _depth(text: str) -> int:
    """The deepest nesting of arrays/objects, ignoring brackets inside strings."""
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
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidJsonError("The request body repeats a key; send each field once.", reason="duplicate json key")
        result[key] = value
    return result


def _bounded(parse: type[int] | type[float]) -> Any:
    def parse_number(literal: str) -> int | float:
        if len(literal) > MAX_NUMBER_CHARS:
            raise InvalidJsonError("The request body has a number too long to be meant.", reason="json number")
        value = parse(literal)
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            raise InvalidJsonError("The request body has a number out of range.", reason="json number")
        return value

    return parse_number


def _no_constant(name: str) -> Any:
    raise InvalidJsonError(f"{name} is not a JSON value.", reason="json constant")
