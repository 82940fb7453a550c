"""The body reader's rules, one by one (the integration tier checks them through the handler)."""

import base64

import pytest

from dnd_rag.errors import InvalidJsonError, PayloadTooLargeError
from dnd_rag.handlers.middlewares import stamp_headers
from dnd_rag.handlers.request_body import MAX_BODY_BYTES, body_text, strict_json


def test_a_flat_document_parses_as_json_does():
    assert strict_json('{"question": "hi", "k": 3, "debug": false, "x": [1.5, null]}') == {
        "question": "hi",
        "k": 3,
        "debug": False,
        "x": [1.5, None],
    }


@pytest.mark.parametrize(
    "text",
    [
        "[" * 33 + "]" * 33,
        '{"a": 1, "a": 2}',
        '{"k": ' + "1" * 65 + "}",
        '{"k": 1e400}',
        '{"k": NaN}',
        "{",
    ],
)
def test_what_no_client_means_is_invalid_json(text):
    with pytest.raises(InvalidJsonError):
        strict_json(text)


def test_nesting_up_to_the_limit_and_brackets_in_strings_are_fine():
    assert strict_json("[" * 32 + "]" * 32)
    assert strict_json('{"q": "[[[[{{{{\\"[[["}') == {"q": '[[[[{{{{"[[['}


def test_a_base64_body_is_decoded_and_checked_as_utf8():
    event = {"body": base64.b64encode('{"q": "caf\u00e9"}'.encode()).decode(), "isBase64Encoded": True}
    assert body_text(event) == '{"q": "caf\u00e9"}'

    with pytest.raises(InvalidJsonError):
        body_text({"body": base64.b64encode(b"\xff").decode(), "isBase64Encoded": True})
    with pytest.raises(InvalidJsonError):
        body_text({"body": "%%%", "isBase64Encoded": True})


def test_the_limit_counts_bytes_not_characters():
    assert body_text({"body": "x" * MAX_BODY_BYTES})
    with pytest.raises(PayloadTooLargeError):
        body_text({"body": "\u00e9" * (MAX_BODY_BYTES // 2 + 1)})  # two bytes each in UTF-8


def test_vary_origin_joins_an_existing_vary_once_and_only_when_cors_is_on():
    event = {"requestContext": {"requestId": "r-1"}}
    response = {"headers": {"vary": "Accept-Encoding"}}
    stamp_headers(response, event, cors=True)
    stamp_headers(response, event, cors=True)

    assert response["headers"]["Vary"] == "Accept-Encoding, Origin"

    without_cors = {}
    stamp_headers(without_cors, event, cors=False)
    assert "Vary" not in without_cors["headers"]


def test_every_answer_gets_nosniff_no_store_unless_it_set_its_own_cache_control_and_hsts_only_when_asked():
    event = {"requestContext": {"requestId": "r-1"}}
    plain, cached, prod = {}, {"headers": {"cache-control": "public, max-age=300"}}, {}
    stamp_headers(plain, event, cors=False)
    stamp_headers(cached, event, cors=False)
    stamp_headers(prod, event, cors=False, hsts=True)

    assert plain["headers"] == {"X-Request-Id": "r-1", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    assert cached["headers"]["cache-control"] == "public, max-age=300"
    assert "Cache-Control" not in cached["headers"]
    assert "Strict-Transport-Security" not in plain["headers"]
    assert prod["headers"]["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
