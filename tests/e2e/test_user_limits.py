"""The issue's "done when", over real HTTP: ``USER_DAILY_BUDGET_USD=0.002 make dev`` refuses
dev-alice once her $0.002 is spent while dev-bob is still answered, and /api/usage shows both caps."""

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import local_stack

pytestmark = pytest.mark.e2e

FIGHTER = "How many experience points does a fighter need to become 9th level?"
CAP = 0.002


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with (
        local_stack(tmp_path_factory.mktemp("capped"), USER_DAILY_BUDGET_USD=str(CAP)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def ask(client, token, question=FIGHTER):
    return client.post("/api/query", json={"question": question}, headers={"Authorization": f"Bearer {token}"})


def test_a_user_past_the_cap_is_refused_while_another_is_answered_and_usage_shows_both_caps(capped):
    answered = []
    while True:  # a new question each time: a repeated one would be a free answer-cache hit
        response = ask(capped, "dev-alice", f"{FIGHTER} (asked {len(answered) + 1} times)")
        if response.status_code != 200:
            break
        answered.append(response.json())
        assert len(answered) < 500, "the cap never refused"
    refusal = response.json()

    assert (response.status_code, refusal["error"], refusal["reason"]) == (429, "user_budget_exceeded", "spent")
    assert set(refusal["rate_info"]) == {"retry_after", "reset_at"}
    assert int(response.headers["Retry-After"]) == refusal["rate_info"]["retry_after"]
    assert answered, "the cap covers some queries"
    assert answered[-1]["meta"]["cost"]["user_daily_total"] <= CAP
    assert ask(capped, "dev-bob").status_code == 200
    usage = capped.get("/api/usage", headers={"Authorization": "Bearer dev-alice"}).json()
    assert usage["user_budget"]["daily_budget"] == CAP
    assert usage["user_budget"]["daily_total"] <= CAP
    assert usage["user_budget"]["daily_total"] == answered[-1]["meta"]["cost"]["user_daily_total"]
    assert usage["budget"]["daily_budget"] == 1.0
