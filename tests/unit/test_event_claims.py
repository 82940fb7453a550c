"""The alert claim store's sends: again after an answer that may have been lost, while a whole call
still fits in the write's time budget (the notifier's bound counts on it), never after a refusal."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from dnd_rag.dal.alerts import event_claims
from dnd_rag.dal.alerts.event_claims import DynamoEventClaims
from dnd_rag.errors import StoreUnavailableError


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "UpdateItem")


class ScriptedDynamo:
    """Answers each update_item with the next of ``script``: an exception to raise (after
    ``takes`` seconds), or None for success."""

    def __init__(self, *script: Exception | None, takes: float = 0.0) -> None:
        self._script = list(script)
        self._takes = takes
        self.sends = 0

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.sends += 1
        time.sleep(self._takes)
        answer = self._script.pop(0)
        if answer is not None:
            raise answer
        return {}


def claim(client: ScriptedDynamo) -> str:
    now = time.time()
    return DynamoEventClaims(client, "t").claim("2026-03-04", "e" * 32, "ses", "owner-a", now, now + 60)


def test_a_lost_answer_is_sent_again_and_the_claim_found_ours():
    client = ScriptedDynamo(client_error("InternalServerError", 500), None)

    assert claim(client) == "won"
    assert client.sends == 2


def test_quick_refusals_are_sent_again_up_to_ten_times_within_the_budget():
    client = ScriptedDynamo(*[client_error("ProvisionedThroughputExceededException", 400)] * 9, None)
    assert claim(client) == "won"
    assert client.sends == 10

    client = ScriptedDynamo(*[client_error("ThrottlingException", 400)] * 11)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        claim(client)
    assert client.sends == 10
    assert time.monotonic() - started < event_claims.STORE_WRITE_SECONDS


def test_a_refused_condition_is_an_answer_never_sent_again():
    refused = client_error("ConditionalCheckFailedException", 400)
    refused.response["Item"] = {"owner": {"S": "owner-b"}}
    client = ScriptedDynamo(refused)

    assert claim(client) == "busy"
    assert client.sends == 1


def test_slow_failures_stop_when_another_call_would_not_fit_the_budget(monkeypatch):
    # scaled down: calls of 0.1 s, a budget of two of them and the pauses
    monkeypatch.setattr(event_claims, "STORE_CALL_SECONDS", 0.1)
    monkeypatch.setattr(event_claims, "STORE_WRITE_SECONDS", 0.25)
    client = ScriptedDynamo(*[ReadTimeoutError(endpoint_url="http://dynamodb")] * 5, takes=0.1)

    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        claim(client)

    assert client.sends == 2
    assert time.monotonic() - started <= 0.25 + 0.05
