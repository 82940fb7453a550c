"""Alert claims under DynamoDB's lost responses: exactly one sender, and never none."""

import time
import uuid

from dnd_rag.dal.budget import DynamoBudgetStore
from dnd_rag.models.money import Charge, HoldEntry, TokenUsage
from infra.local.bootstrap import ensure_table

DAY = "2026-11-28"


def store_with_spend(dynamodb, spent):
    table = f"claims-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb, table)
    store = DynamoBudgetStore(dynamodb, table)
    now = time.time()
    granted, _ = store.try_reserve(DAY, "h1", HoldEntry(spent, now + 60, "u-1", "gpt-4o-mini"), 10 * spent, now)
    assert granted
    store.settle(DAY, "h1", spent, Charge("u-1", "gpt-4o-mini", TokenUsage(), spent), now, now)
    return store


def test_a_claim_whose_response_was_lost_is_still_the_senders_and_only_its(dynamodb, emulator_faults):
    store = store_with_spend(dynamodb, 900)
    now = time.time()
    # the claim is applied, its answer lost; the SDK sends it again
    emulator_faults.set(
        [{"fault": "lost_response", "operations": ["UpdateItem"], "key_prefix": "BUDGET#", "max_count": 1}]
    )

    first = store.claim_alert(DAY, 80, now, now + 60, 800)
    second = store.claim_alert(DAY, 80, now, now + 60, 800)  # another container, while the claim is live

    assert emulator_faults.injected() == {"lost_response": {"UpdateItem": 1}}
    assert (first, second) == (True, False)
