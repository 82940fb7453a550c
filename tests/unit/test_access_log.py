"""make dev's line per request: who (a dev user's name or a short hash, never a token), how long,
the cache and the cost from the answer, the error code of a rejection; and the final summary."""

import json

from infra.local.access_log import Tally, access_line, usd

ALICE = "00000000-0000-4000-a000-00000000a11c"


def answer(user_id, cache="miss", cost=0.00034):
    return json.dumps({"answer": "...", "meta": {"user_id": user_id, "cache": cache, "cost": {"query_cost": cost}}})


def test_a_query_line_names_the_dev_user_the_cache_and_the_cost():
    line, cost = access_line(
        "POST", "/api/query", 200, 48.2, {"authorization": "Bearer dev-alice"}, answer(ALICE).encode()
    )

    assert line == "POST /api/query 200 alice 48 ms cache=miss $0.00034"
    assert cost == 0.00034


def test_another_user_is_a_short_hash_and_a_token_is_never_shown():
    line, _ = access_line(
        "POST", "/api/query", 200, 5, {"authorization": "Bearer s3cret-token"}, answer("user-42", "hit", 0).encode()
    )

    who = line.split()[3]
    assert who.startswith("u:")
    assert len(who) == 10
    assert line.endswith("cache=hit $0")
    assert "s3cret" not in line


def test_a_rejection_shows_its_code_and_who_only_for_a_dev_token():
    refused = json.dumps({"error": "rate_limited", "message": "Slow down."}).encode()

    assert access_line("POST", "/api/query", 429, 6, {"authorization": "Bearer dev-bob"}, refused)[0] == (
        "POST /api/query 429 bob 6 ms rate_limited"
    )
    assert access_line("GET", "/api/usage", 401, 3, {"authorization": "Bearer tok-123"}, refused)[0] == (
        "GET /api/usage 401 - 3 ms rate_limited"
    )
    assert access_line("GET", "/health", 200, 1, {}, b'{"status":"ok"}')[0] == "GET /health 200 - 1 ms"


def test_the_summary_counts_statuses_and_dollars():
    tally = Tally()
    assert tally.summary() == "no requests"
    for status, cost in [(200, 0.0003), (200, 0.0), (429, 0.0)]:
        tally.add(status, cost)

    assert tally.summary() == "3 requests (2 x 200, 1 x 429), $0.0003 spent"
    assert (usd(0), usd(0.00000001)) == ("$0", "<$0.000001")
