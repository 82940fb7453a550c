"""The pure parts of `make capacity` (infra/scripts/capacity.py): WCU attribution from the emulator's
capacity meter, the day's totals over every budget item, the table and the last line."""

import subprocess
import sys
import textwrap
from collections import Counter

from infra.scripts.capacity import Run, attribute, day_totals, format_table, item_kind, summary_line
from tests.support.servers import REPO_ROOT, python_env

DAY = "2026-01-02"
SNAPSHOT = {
    "items": {
        f"BUDGET#{DAY}|TOTAL": {"wcu": 40, "rcu": 3, "throttled": 5},
        f"BUDGET#{DAY}|SHARD#3": {"wcu": 20, "rcu": 0, "throttled": 1},
        f"LEDGER#{DAY}|USER#u-1": {"wcu": 30, "rcu": 1, "throttled": 2},
        f"LEDGER#{DAY}|CHARGE#h1": {"wcu": 10, "rcu": 0, "throttled": 0},
        "USER#u-1|LIMITS": {"wcu": 10, "rcu": 0, "throttled": 0},
        "CONTROL|CURRENT": {"wcu": 0, "rcu": 7, "throttled": 0},
    },
    "total": {"wcu": 110, "rcu": 11, "throttled": 8},
    "item_wcu_per_second": 20,
}


def run(shards: int, in_flight: int, answered: int, wcu: float, **kwargs: object) -> Run:
    result = Run(shards, in_flight, seconds=10.0, answered=answered, limit=10**12, **kwargs)
    result.capacity = attribute({"items": {f"BUDGET#{DAY}|TOTAL": {"wcu": wcu, "throttled": 0}}, "total": {"wcu": wcu}})
    return result


def test_items_are_grouped_by_the_prefix_of_their_partition_key():
    assert item_kind(f"BUDGET#{DAY}|TOTAL") == "BUDGET"
    assert item_kind("CONTROL|CURRENT") == "CONTROL"
    assert item_kind("USER#a#b|LIMITS") == "USER"


def test_wcu_are_attributed_to_the_budget_items_and_the_others():
    used = attribute(SNAPSHOT)

    assert used.wcu == 110
    assert used.by_kind == {"BUDGET": 60, "LEDGER": 40, "USER": 10}  # reads only: not listed
    assert used.budget_wcu == 60
    assert round(used.budget_share, 4) == round(60 / 110, 4)
    assert (used.throttled, used.budget_throttled) == (8, 6)
    assert used.throttled_by_kind == {"BUDGET": 6, "LEDGER": 2}
    assert used.per_query(11) == 10
    assert used.per_query(0) is None


def test_an_empty_meter_attributes_nothing():
    used = attribute({})

    assert (used.wcu, used.by_kind, used.throttled, used.budget_share) == (0, {}, 0, 0)


class _Pages:
    def __init__(self, pages: list[dict[str, object]]) -> None:
        self.pages = pages
        self.asked: dict[str, object] = {}

    def get_paginator(self, name: str) -> "_Pages":
        assert name == "query"
        return self

    def paginate(self, **kwargs: object) -> list[dict[str, object]]:
        self.asked = kwargs
        return self.pages


def test_the_days_totals_sum_every_item_under_the_days_budget_partition():
    client = _Pages(
        [
            {"Items": [{"sk": {"S": "TOTAL"}, "spent": {"N": "100"}, "committed": {"N": "150"}}]},
            {"Items": [{"sk": {"S": "SHARD#1"}, "spent": {"N": "7"}, "committed": {"N": "7"}}, {"sk": {"S": "X"}}]},
        ]
    )

    assert day_totals(client, "table", DAY) == (107, 157)
    assert client.asked["ExpressionAttributeValues"] == {":pk": {"S": f"BUDGET#{DAY}"}}
    assert client.asked["ConsistentRead"] is True


def test_the_table_has_a_row_per_run_and_says_what_bound_it():
    throttled = run(1, 64, answered=30, wcu=900)
    throttled.capacity = attribute(SNAPSHOT)
    throttled.refused = Counter({"service_unavailable": 12})
    throttled.failures = Counter({"500 internal_error": 1})
    throttled.spent, throttled.committed = 5 * 10**9, 5 * 10**9 + 25 * 10**6
    refused = Run(4, 8, rejected="BUDGET_SHARDS: must be a power of two")

    header, calm, busy, rejected = format_table([run(1, 1, answered=10, wcu=80), throttled, refused])

    assert header.split()[:4] == ["shards", "in", "flight", "answered"]
    assert calm.split()[:7] == ["1", "1", "10", "1.00", "-", "machine", "8.0"]
    # 110 WCU / 30 answered, 60 of them on the budget; 8 throttled, 6 on the budget; 1 failure;
    # 0.5 % of the budget spent, $0.025 still held
    assert busy.split() == ["1", "64", "30", "3.00", "-", "ceiling", "3.7", "55%", "8", "(6)", "12", "0", "1",
                            "0.5000", "%", "0.0250"]  # fmt: skip
    assert "refused by the service: BUDGET_SHARDS" in rejected


def test_the_last_line_states_the_figures_the_goals_and_the_verdict():
    met = [run(1, 1, 10, 80), run(1, 64, 20, 160), run(16, 1, 10, 80), run(16, 64, 250, 2_200)]

    line = summary_line(met, [])

    assert line.startswith(
        "capacity: shards=1 2.0, shards=16 25.0; WCU/query at 1 in flight 8.00, at 64 in flight 8.80"
    )
    assert "(now 12.50x;" in line
    assert "(now 1.10x)" in line
    assert line.endswith("overshoot 0 (now 0); verdict: goals met]")
    assert "\n" not in line


def test_wcu_per_query_comes_from_the_runs_with_the_ceiling_off_when_there_are_some():
    throttled = [run(1, 1, 10, 80), run(16, 1, 10, 80), run(16, 64, 250, 3_300)]  # failed queries' writes
    unthrottled = [run(16, 1, 10, 80), run(16, 64, 300, 2_460)]

    line = summary_line(throttled, [], unthrottled)

    assert "WCU/query at 1 in flight 8.00, at 64 in flight 8.20" in line
    assert "(now 1.02x)" in line
    assert summary_line(throttled, []).endswith("verdict: goals NOT met]")  # 13.2 WCU/q from the throttled run


def test_the_verdict_fails_on_growth_overshoot_or_a_failed_request():
    growing = [run(1, 1, 10, 80), run(16, 1, 100, 800), run(16, 64, 250, 5_000)]
    assert summary_line(growing, []).endswith("verdict: goals NOT met]")

    overspent = run(16, 8, 10, 80)
    overspent.spent = overspent.limit + 1
    assert "overshoot 0 (now 1)" in summary_line(growing[:2], [overspent])

    failed = run(16, 64, 250, 2_000, failures=Counter({"hung (no answer yet)": 1}))
    assert summary_line([run(1, 1, 10, 80), failed], []).endswith("verdict: FAILED (errors above)]")
    assert summary_line([], []) == "capacity: no run measured; verdict: FAILED"


def test_containers_run_as_threads_each_see_their_own_request():
    """Powertools keeps the current event in a class attribute: per process; the script makes it per thread."""
    script = textwrap.dedent(
        """
        import threading
        from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
        from infra.scripts.capacity import per_thread_router_state

        per_thread_router_state()
        per_thread_router_state()  # idempotent
        BaseRouter.current_event = "main"
        seen = {}

        def handle(name):
            BaseRouter.current_event = name
            barrier.wait()  # every thread has written before any reads
            seen[name] = (BaseRouter.current_event, Router().current_event)

        from aws_lambda_powertools.event_handler import APIGatewayHttpResolver as Router

        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=handle, args=(f"t{i}",)) for i in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert seen == {f"t{i}": (f"t{i}", f"t{i}") for i in range(4)}, seen
        assert BaseRouter.current_event == "main"
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=python_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )

    assert done.stdout.strip() == "ok", done.stderr
