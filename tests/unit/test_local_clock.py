"""LOCAL_CLOCK_START: parsed once by the stack into one offset; the gateway's events and the
function's clock add it; refused when it is not a UTC instant or when STAGE is prod."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from dnd_rag.container import Container
from dnd_rag.settings import ConfigError, load_settings
from infra.local.api_server import build_event
from infra.local.clock import OFFSET_VARIABLE, ClockStartError, clock_environment, parse_start
from tests.support.servers import REPO_ROOT, python_env

MINIMAL = {"AUTH_API_URL": "http://127.0.0.1:8081", "TABLE_NAME": "dnd-rag-local"}
A_DAY = 86_400.0


@pytest.mark.parametrize("text", ["2030-01-01T23:59:50Z", "2030-01-01T23:59:50+00:00", "2030-01-01 23:59:50Z"])
def test_a_utc_instant_is_accepted(text):
    assert parse_start(text) == datetime(2030, 1, 1, 23, 59, 50, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2030-01-01T23:59:50", "2030-01-01", "2030-01-01T23:59:50+02:00", "tomorrow"])
def test_anything_but_a_utc_instant_is_refused_naming_the_variable(text):
    with pytest.raises(ClockStartError, match="LOCAL_CLOCK_START"):
        parse_start(text)


def test_the_stack_turns_the_start_into_one_offset_from_now():
    env = {"LOCAL_CLOCK_START": "2030-01-01T23:59:50Z"}

    start = clock_environment(env, now=datetime(2030, 1, 1, 12, tzinfo=UTC).timestamp())

    assert start == datetime(2030, 1, 1, 23, 59, 50, tzinfo=UTC)
    assert float(env[OFFSET_VARIABLE]) == 11 * 3600 + 59 * 60 + 50
    assert clock_environment({}) is None


def test_the_stack_refuses_a_clock_start_in_prod():
    with pytest.raises(ClockStartError, match="LOCAL_CLOCK_START is for the local stack only"):
        clock_environment({"LOCAL_CLOCK_START": "2030-01-01T23:59:50Z", "STAGE": "prod"})


def test_make_dev_exits_at_once_on_a_clock_start_that_is_not_a_utc_instant(tmp_path):
    env = python_env({"LOCAL_CLOCK_START": "2030-01-01 23:59", "LOCAL_DATA_DIR": str(tmp_path)})

    result = subprocess.run(
        [sys.executable, "-m", "infra.local.stack"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 2
    assert "LOCAL_CLOCK_START='2030-01-01 23:59' is not a UTC instant" in result.stderr
    assert "ready" not in result.stdout


@pytest.mark.parametrize("variable", ["LOCAL_CLOCK_START", "LOCAL_CLOCK_OFFSET_SECONDS"])
def test_the_function_refuses_a_local_clock_in_prod_at_cold_start(variable):
    prod = {**MINIMAL, "STAGE": "prod", "AUTH_API_URL": "https://api.example.com"}
    with pytest.raises(ConfigError, match=f"{variable} is for the local stack only; unset it when STAGE is prod"):
        load_settings({**prod, variable: "2030-01-01T23:59:50Z" if variable == "LOCAL_CLOCK_START" else "60"})


def test_the_function_clock_and_the_gateway_events_are_on_the_same_shifted_clock(monkeypatch):
    monkeypatch.setenv(OFFSET_VARIABLE, str(A_DAY))
    container = Container(load_settings({**MINIMAL, OFFSET_VARIABLE: str(A_DAY)}))

    event = build_event("GET", "/health", "", {}, b"", "GET /health", {}, "127.0.0.1")

    assert container.clock() == pytest.approx(time.time() + A_DAY, abs=5)
    assert event["requestContext"]["timeEpoch"] / 1000 == pytest.approx(container.clock(), abs=5)


def test_without_a_clock_start_the_clock_is_the_real_one(monkeypatch):
    monkeypatch.delenv(OFFSET_VARIABLE, raising=False)
    assert Container(load_settings(MINIMAL)).clock is time.time
    event = build_event("GET", "/health", "", {}, b"", "GET /health", {}, "127.0.0.1")
    assert event["requestContext"]["timeEpoch"] / 1000 == pytest.approx(time.time(), abs=5)
