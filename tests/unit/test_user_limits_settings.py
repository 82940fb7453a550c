"""USER_DAILY_BUDGET_USD, MAX_IN_FLIGHT_PER_USER and their per-plan overrides, without any store."""

from decimal import Decimal

import pytest

from dnd_rag.container import Container
from dnd_rag.logic.limits.plans import PlanBook
from dnd_rag.logic.limits.rate_limit import Policy
from dnd_rag.models.limits import UserLimits
from dnd_rag.settings import ConfigError, PlanLimits, load_settings

MINIMAL = {"AUTH_API_URL": "http://127.0.0.1:8081", "TABLE_NAME": "dnd-rag-local"}
POLICY = Policy(capacity=15, refill_rate=1 / 60, daily_limit=30)


def test_by_default_every_user_has_a_cap_of_5_cents_and_two_queries_at_once():
    settings = load_settings(MINIMAL)

    assert settings.user_daily_budget_usd == Decimal("0.05")
    assert settings.max_in_flight_per_user == 2
    assert Container(settings).plans.user_limits(None) == UserLimits(daily_nanos=50_000_000, max_in_flight=2)


def test_the_cap_and_the_in_flight_limit_come_from_the_environment_as_nano_dollars():
    settings = load_settings({**MINIMAL, "USER_DAILY_BUDGET_USD": "0.002", "MAX_IN_FLIGHT_PER_USER": "3"})

    assert settings.user_daily_budget_usd == Decimal("0.002")
    assert Container(settings).plans.user_limits("free") == UserLimits(daily_nanos=2_000_000, max_in_flight=3)


def test_an_empty_cap_is_the_default_none_is_no_cap_and_zero_is_a_cap_of_nothing():
    assert load_settings({**MINIMAL, "USER_DAILY_BUDGET_USD": ""}).user_daily_budget_usd == Decimal("0.05")
    assert load_settings({**MINIMAL, "USER_DAILY_BUDGET_USD": "none"}).user_daily_budget_usd is None
    assert load_settings({**MINIMAL, "USER_DAILY_BUDGET_USD": " Off "}).user_daily_budget_usd is None
    assert Container(load_settings({**MINIMAL, "USER_DAILY_BUDGET_USD": "0"})).plans.user_limits(None).daily_nanos == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("USER_DAILY_BUDGET_USD", "lots"),
        ("USER_DAILY_BUDGET_USD", "-0.01"),
        ("USER_DAILY_BUDGET_USD", "NaN"),
        ("USER_DAILY_BUDGET_USD", "Infinity"),
        ("MAX_IN_FLIGHT_PER_USER", "0"),
        ("MAX_IN_FLIGHT_PER_USER", "two"),
        ("MAX_IN_FLIGHT_PER_USER", "1.5"),
        ("PLAN_LIMITS", '{"pro": {"daily_usd": -1}}'),
        ("PLAN_LIMITS", '{"pro": {"daily_usd": "much"}}'),
        ("PLAN_LIMITS", '{"pro": {"max_in_flight": 0}}'),
    ],
)
def test_invalid_values_fail_at_cold_start_naming_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load_settings({**MINIMAL, variable: value})


def test_a_plan_overrides_the_cap_and_the_in_flight_limit_each_on_its_own():
    plans = PlanBook(
        POLICY,
        {
            "pro": PlanLimits(daily_usd=Decimal("0.5"), max_in_flight=4),
            "team": PlanLimits(max_in_flight=8),
            "trial": PlanLimits(daily_usd=Decimal("0.01")),
            "burst": PlanLimits(capacity=60),
        },
        UserLimits(daily_nanos=2_000_000, max_in_flight=2),
    )

    assert plans.user_limits("pro") == UserLimits(500_000_000, 4)
    assert plans.user_limits("team") == UserLimits(2_000_000, 8)  # the default cap stays
    assert plans.user_limits("trial") == UserLimits(10_000_000, 2)
    assert plans.user_limits("burst") == UserLimits(2_000_000, 2)  # a rate-limit override only
    assert plans.user_limits("unknown") == plans.user_limits(None) == UserLimits(2_000_000, 2)
    assert plans.policy("burst")[1].capacity == 60


def test_a_plan_may_set_a_cap_when_the_default_has_none():
    plans = PlanBook(POLICY, {"pro": PlanLimits(daily_usd=Decimal("1"))})

    assert plans.user_limits("pro").daily_nanos == 1_000_000_000
    assert plans.user_limits(None).daily_nanos is None
