"""LOCAL_CLOCK_START: the local gateway and the function it runs share one shifted clock, so a day
can be watched ending by hand. The real gateway (``python -m infra.local.api_server``, its worker
processes and the real handler) is started with the environment the stack gives its children."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from infra.local.clock import OFFSET_VARIABLE, clock_environment
from tests.support.budget_items import shard_items
from tests.support.servers import free_port, python_env, running

ALICE = "00000000-0000-4000-a000-00000000a11c"  # dev-alice (infra/local/auth_server.py)
START = "2029-12-31T23:59:40Z"  # 20 s before a midnight (and a new year)
DAY, NEXT_DAY = "2029-12-31", "2030-01-01"
MIDNIGHT = datetime(2030, 1, 1, tzinfo=UTC).timestamp()


def get(dynamodb: Any, table: str, pk: str, sk: str) -> dict[str, Any]:
    return dynamodb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True).get(
        "Item", {}
    )


def ask(client: httpx.Client) -> dict[str, Any]:
    response = client.post(
        "/api/query", json={"question": "What is a beholder?"}, headers={"Authorization": "Bearer dev-alice"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_with_a_clock_start_before_midnight_queries_are_booked_on_that_day_and_then_on_the_next(
    base_env: dict[str, str], corpus_ingested: None, table: str, dynamodb: Any, tmp_path: Path
) -> None:
    # Given the gateway and the function started as the stack starts them, the clock 20 s before midnight
    port = free_port()
    env = python_env({**base_env, "TABLE_NAME": table, "LOCAL_API_CONTAINERS": "1", "LOCAL_CLOCK_START": START})
    clock_environment(env)
    offset = float(env[OFFSET_VARIABLE])
    command = [sys.executable, "-m", "infra.local.api_server", "--port", str(port)]
    with (
        running(command, port, tmp_path / "api.log", env=env),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        assert time.time() + offset < MIDNIGHT - 3, "the gateway took too long to start for this test"

        # When alice asks before midnight
        before = ask(client)
        assert time.time() + offset < MIDNIGHT, "the first answer came after midnight: a slow machine"

        # Then her query is booked on that day, and nothing yet on the next
        assert shard_items(dynamodb, table, DAY)  # the day's budget items (whichever shard it held on)
        assert get(dynamodb, table, f"LEDGER#{DAY}", f"USER#{ALICE}")
        assert not shard_items(dynamodb, table, NEXT_DAY)

        # When the shifted clock passes midnight (real speed) and she asks again
        time.sleep(max(0.0, MIDNIGHT + 0.5 - (time.time() + offset)))
        after = ask(client)

        # Then it is booked on the next day, whose total starts afresh with it
        assert shard_items(dynamodb, table, NEXT_DAY)
        assert get(dynamodb, table, f"LEDGER#{NEXT_DAY}", f"USER#{ALICE}")
        assert after["meta"]["cost"]["daily_total"] == after["meta"]["cost"]["query_cost"]
        assert before["meta"]["cost"]["daily_total"] >= before["meta"]["cost"]["query_cost"] > 0
