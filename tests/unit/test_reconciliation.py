"""The reconciliation's arithmetic (logic/operations/reconciliation.py), pure: the books split per
model actually called, the day's drift and safety margin against the tolerance, which days a run
does, and the costs API's dollars read back to the nano-dollar."""

import pytest

from dnd_rag.logic.common.clock import day_end
from dnd_rag.logic.operations.reconciliation import (
    SETTLE_SECONDS,
    BilledDay,
    DayReconciliation,
    ModelUsage,
    Reconciler,
    base_model,
    books_by_model,
    finished_days,
    reconcile_day,
)
from dnd_rag.logic.ports import LedgerRow
from dnd_rag.providers.openai_usage import nanos_of

DAY = "2026-11-22"
EMBED = "text-embedding-3-small"
EMBED_PRICE = 20  # nano-dollars per token


def row(name, prompt=0, completion=0, embedding=0, cost=0, requests=1):
    return LedgerRow(name, requests, prompt, completion, embedding, cost)


def test_a_chat_rows_embedding_share_moves_to_the_embedding_model_at_its_price():
    books = books_by_model(
        [
            row("gpt-4o-mini", prompt=1000, completion=100, embedding=50, cost=300_000),
            row(EMBED, embedding=10, cost=200),
        ],
        EMBED,
        EMBED_PRICE,
    )

    assert books == {
        "gpt-4o-mini": ModelUsage(1000, 100, 1, 300_000 - 50 * EMBED_PRICE),
        EMBED: ModelUsage(60, 0, 1, 50 * EMBED_PRICE + 200),  # the ingester's call counts, a query's does not
    }


def test_an_orphan_charged_in_full_stays_on_its_chat_model():
    books = books_by_model([row("gpt-4o-mini", cost=500_000, requests=1)], EMBED, EMBED_PRICE)

    assert books == {"gpt-4o-mini": ModelUsage(0, 0, 1, 500_000)}


def test_snapshot_names_are_their_models():
    assert base_model("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert base_model("gpt-4o-mini") == "gpt-4o-mini"
    assert base_model("text-embedding-3-small") == "text-embedding-3-small"


def test_books_below_the_bill_beyond_the_tolerance_drift_and_above_it_is_the_safety_margin():
    books = {"gpt-4o-mini": ModelUsage(1000, 100, 2, 1_000_000), EMBED: ModelUsage(50, 0, 0, 1_000)}
    billed = BilledDay(
        usage={"gpt-4o-mini-2024-07-18": ModelUsage(1000, 100, 2), EMBED: ModelUsage(50, 0, 2)},
        costs={"gpt-4o-mini-2024-07-18": 1_200_000, EMBED: 1_000},
    )

    result = reconcile_day(DAY, books, billed, tolerance=100_000, now=day_end(DAY) + 900)

    assert (result.books, result.billed, result.difference) == (1_001_000, 1_201_000, -200_000)
    assert (result.drift, result.safety_margin, result.drifting, result.final) == (200_000, 0, True, False)
    chat = next(line for line in result.models if line.model == "gpt-4o-mini")
    assert (chat.difference, chat.billed.input_tokens, chat.billed.requests) == (-200_000, 1000, 2)
    within = reconcile_day(DAY, books, billed, tolerance=200_000, now=day_end(DAY) + 900)
    assert not within.drifting
    above = reconcile_day(DAY, books, BilledDay(costs={"gpt-4o-mini": 900_000}), 0, day_end(DAY) + SETTLE_SECONDS)
    assert (above.drift, above.safety_margin, above.final) == (0, 101_000, True)


@pytest.mark.parametrize(
    ("value", "nanos"),
    [
        (0.06, 60_000_000),
        (0.000000001, 1),
        (1.0008067, 1_000_806_700),
        (123.456789012, 123_456_789_012),
        (1.036892247, 1_036_892_247),  # x 1e9 in floats is 1036892246.99...: truncating loses a nano-dollar
    ],
)
def test_the_costs_apis_dollars_are_read_back_to_the_nano_dollar(value, nanos):
    assert nanos_of(value) == nanos


class MemoryStore:
    def __init__(self):
        self.results = {}

    def put(self, result):
        self.results[result.day] = result

    def get(self, day):
        return self.results.get(day)

    def between(self, start, end):
        return [r for day, r in sorted(self.results.items()) if start <= day <= end]


def test_a_run_does_every_finished_day_of_the_lookback_until_it_is_final():
    store = MemoryStore()
    now = day_end(DAY) + 900  # 00:15 the next day
    reconciler = Reconciler(None, None, store, lambda: now, EMBED, EMBED_PRICE, 0, lookback_days=3)

    assert finished_days(now, 3) == ["2026-11-20", "2026-11-21", DAY]
    store.put(DayReconciliation("2026-11-20", [], 0, 0, 0, reconciled_at=now, final=True))
    store.put(DayReconciliation("2026-11-21", [], 0, 5, 0, reconciled_at=now, final=True))  # drift, not alerted
    assert reconciler.due_days(now) == ["2026-11-21", DAY]


def test_a_run_out_of_time_leaves_the_remaining_days_to_the_next_run():
    now = day_end(DAY) + 900

    class Books:
        def models(self, day):
            return []

    class Records:
        def billed_day(self, day):
            return BilledDay()

    reconciler = Reconciler(Books(), Records(), MemoryStore(), lambda: now, EMBED, EMBED_PRICE, 0, lookback_days=3)

    assert [r.day for r in reconciler.run(budget_seconds=-1)] == []
    assert [r.day for r in reconciler.run()] == ["2026-11-20", "2026-11-21", DAY]
    # redone on later runs until 48 h after they ended: the 20th ended 48 h 15 min ago, it is final
    assert reconciler.due_days(now) == ["2026-11-21", DAY]
