"""What a plan allows a query to cost (issue 19, cost amplification): ``k`` up to the plan's
``max_k`` (the default plan 20, ``PLAN_LIMITS[plan].max_k`` up to 50), checked before anything is
admitted or spent, and a default per-user dollar cap."""

import uuid

import pytest

from dnd_rag.settings import load_settings
from tests.support.events import http_event, parse

QUESTION = "What is a beholder?"


@pytest.fixture
def app(make_app, any_user_auth_url):
    return make_app({"AUTH_API_URL": any_user_auth_url, "PLAN_LIMITS": '{"pro": {"max_k": 50}}'})[0]


def ask(call, app, token, k):
    return parse(call(app, http_event("POST", "/api/query", token=token, body={"question": QUESTION, "k": k})))


def usage(call, app, token):
    return parse(call(app, http_event("GET", "/api/usage", token=token)))[1]


def test_the_default_plan_asks_for_at_most_20_passages_and_a_refusal_costs_nothing(app, call):
    token = f"u-{uuid.uuid4().hex}"

    over = ask(call, app, token, 21)
    at_most = ask(call, app, token, 20)

    assert (over[0], over[1]["error"]) == (400, "validation_error"), over[1]
    assert [detail["field"] for detail in over[1]["details"]] == ["k"]
    assert "20" in over[1]["details"][0]["message"]
    assert at_most[0] == 200
    assert usage(call, app, token)["today"]["requests"] == 1  # the refused one consumed nothing


def test_a_plan_may_allow_more_passages(app, call):
    assert ask(call, app, f"u-{uuid.uuid4().hex}.pro", 50)[0] == 200


def test_usage_tells_the_caller_their_plans_max_k(app, call):
    assert usage(call, app, f"u-{uuid.uuid4().hex}")["max_k"] == 20
    assert usage(call, app, f"u-{uuid.uuid4().hex}.pro")["max_k"] == 50


def test_every_user_has_a_dollar_cap_by_default(base_env):
    minimal = {"AUTH_API_URL": base_env["AUTH_API_URL"], "TABLE_NAME": base_env["TABLE_NAME"]}

    assert str(load_settings(minimal).user_daily_budget_usd) == "0.05"
    assert load_settings({**minimal, "USER_DAILY_BUDGET_USD": "none"}).user_daily_budget_usd is None
