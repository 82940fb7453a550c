"""The SNS channel's Publish request: a subject SNS accepts whatever the event's key holds."""

from __future__ import annotations

from typing import Any

from dnd_rag.dal.alerts.sns_channel import SnsChannel
from dnd_rag.models.events import Event


class RecordingSns:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def publish(self, **request: Any) -> dict[str, str]:
        self.requests.append(request)
        return {"MessageId": "m-1"}


def published_subject(key: str) -> str:
    client = RecordingSns()
    event = Event(type="user_quota_exceeded", day="2025-01-02", key=key, occurred_at="2025-01-02T03:04:05Z")

    SnsChannel(client, "arn:aws:sns:us-east-1:123456789012:alerts").deliver(event)

    (request,) = client.requests
    return str(request["Subject"])


def test_a_long_subject_is_cut_below_100_characters_and_ends_with_an_ellipsis():
    # SNS refuses a Subject of 100 characters or more: the whole alert would be lost
    subject = published_subject("u" * 200 + ":requests")

    assert len(subject) == 99
    assert subject.startswith("[dnd_rag] user_quota_exceeded uuu")
    assert subject.endswith("uuu...")


def test_a_short_subject_is_left_whole():
    assert published_subject("42:requests") == "[dnd_rag] user_quota_exceeded 42:requests (2025-01-02)"


def test_line_breaks_and_non_ascii_characters_never_reach_the_subject():
    subject = published_subject("bad\nkey\u00e9\u2026")

    assert subject == "[dnd_rag] user_quota_exceeded bad?key?? (2025-01-02)"
    assert all(" " <= char <= "~" for char in subject)
