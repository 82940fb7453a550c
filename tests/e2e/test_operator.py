"""The operator's kill switch through the started stack (several containers): pause, every
container answers 503 service_paused once its copy of the controls is older than the refresh
interval; resume, and queries are answered again."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer dev-admin"}
REFRESH_SECONDS = 4  # CONTROLS_REFRESH_SECONDS' default: no container's copy is older than this
QUESTION = {"question": "What is a beholder?", "k": 3}


def ask_from_every_container(client, token):
    """As many queries at once as the stack has containers (LOCAL_API_CONTAINERS, 4)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(
            pool.map(
                lambda _: client.post("/api/query", json=QUESTION, headers={"Authorization": f"Bearer {token}"}),
                range(4),
            )
        )


def test_pause_refuses_queries_on_every_container_and_resume_restores_them(client):
    paused = client.post("/api/admin/pause", json={"reason": "e2e kill switch"}, headers=ADMIN)
    try:
        assert paused.status_code == 200, paused.text
        time.sleep(REFRESH_SECONDS + 0.5)  # every container's copy has aged past the refresh interval
        refused = ask_from_every_container(client, "dev-bob")
        refused_by_bob = client.post(
            "/api/admin/pause", json={"reason": "x"}, headers={"Authorization": "Bearer dev-bob"}
        )
    finally:
        resumed = client.post("/api/admin/resume", headers=ADMIN)
    assert [(r.status_code, r.json()["error"]) for r in refused] == [(503, "service_paused")] * 4
    assert all(int(r.headers["Retry-After"]) > 0 for r in refused)
    assert (refused_by_bob.status_code, refused_by_bob.json()["error"]) == (403, "forbidden")
    assert resumed.status_code == 200, resumed.text

    time.sleep(REFRESH_SECONDS + 0.5)
    answered = client.post("/api/query", json=QUESTION, headers={"Authorization": "Bearer dev-bob"})

    assert answered.status_code == 200, answered.text
    entries = client.get("/api/admin/audit", params={"limit": 3}, headers=ADMIN).json()["entries"]
    # dev-bob's refused pause is in the trail too, between the two changes
    assert [(e["action"], e["after"].get("error")) for e in entries] == [
        ("resume", None),
        ("denied", "forbidden"),
        ("pause", None),
    ]
