"""Alert delivery claims under DynamoDB's lost responses: exactly one sender, and never none."""

import time
import uuid

from dnd_rag.dal.alerts.event_claims import DynamoEventClaims
from infra.local.bootstrap import ensure_table

DAY = "2026-11-28"
EVENT = "e" * 32


def claims(dynamodb):
    table = f"claims-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb, table)
    return DynamoEventClaims(dynamodb, table)


def test_a_claim_whose_response_was_lost_is_still_the_senders_and_only_its(dynamodb, emulator_faults):
    store = claims(dynamodb)
    now = time.time()
    # the claim is applied, its answer lost; the SDK sends it again
    emulator_faults.set(
        [{"fault": "lost_response", "operations": ["UpdateItem"], "key_prefix": "EVENT#", "max_count": 1}]
    )

    first = store.claim(DAY, EVENT, "webhook", "owner-a", now, now + 60)
    second = store.claim(DAY, EVENT, "webhook", "owner-b", now, now + 60)  # another container, claim live

    assert emulator_faults.injected() == {"lost_response": {"UpdateItem": 1}}
    assert (first, second) == ("won", "busy")


def test_a_claim_is_per_channel_expires_and_ends_when_marked_sent(dynamodb):
    store = claims(dynamodb)
    now = time.time()

    assert store.claim(DAY, EVENT, "webhook", "a", now, now + 60) == "won"
    assert store.claim(DAY, EVENT, "sns", "b", now, now + 60) == "won"  # another channel: its own claim
    assert store.claim(DAY, EVENT, "webhook", "c", now + 61, now + 121) == "won"  # a's claim expired
    store.drop(DAY, EVENT, "webhook", "a")  # a, late, cannot drop c's live claim
    assert store.claim(DAY, EVENT, "webhook", "d", now + 62, now + 122) == "busy"
    store.mark_sent(DAY, EVENT, "webhook", "c", now + 63)
    assert store.claim(DAY, EVENT, "webhook", "e", now + 200, now + 260) == "sent"
