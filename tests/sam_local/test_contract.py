"""The e2e contract tests of ``make dev`` (tests/e2e/test_stack.py), through ``sam local start-api``.

Same test functions, another server: SAM's API emulator invoking the function ``sam build``
packaged (function + layer, Lambda's runtime client, no virtualenv of ours).
"""

import pytest

from tests.e2e.test_stack import (  # noqa: F401 - collected here again, against sam local
    ask,
    test_bad_tokens_are_401,
    test_broken_json_is_invalid_json,
    test_cors_preflight_allows_only_configured_origins,
    test_empty_body_object_is_validation_error,
    test_fighter_question_answers_250001,
    test_health,
    test_no_answer_carries_two_allow_origins_and_another_origin_gets_no_cors_header,
    test_unknown_path_is_not_found_in_the_api_shape,
)

pytestmark = pytest.mark.sam_local

BURST = 15  # the template's default TokenBucketCapacity


def test_the_query_after_a_full_burst_is_rate_limited(client):
    # dev-admin is used by no other test of this tier
    statuses = [ask(client, f"What is a beholder? ({n})", token="dev-admin").status_code for n in range(BURST)]
    refused = ask(client, "What is a beholder? (one too many)", token="dev-admin")

    assert statuses == [200] * BURST
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "rate_limited"
    assert body["request_id"] == refused.headers["X-Request-Id"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert body["rate_info"]["remaining_burst"] == 0
