from decimal import Decimal

import pytest

from dnd_rag.settings import ConfigError, load_settings

MINIMAL = {"AUTH_API_URL": "http://127.0.0.1:8081", "TABLE_NAME": "dnd-rag-local"}


def test_defaults_follow_the_spec():
    settings = load_settings(MINIMAL)

    assert settings.token_cache_ttl == 300
    assert settings.token_bucket_capacity == 15
    assert settings.token_refill_rate == pytest.approx(1 / 60)
    assert settings.daily_user_request_limit == 30
    assert settings.daily_budget_usd == Decimal("1.0")
    assert settings.openai_model == "gpt-4o-mini"
    assert (settings.llm_provider, settings.embedding_provider) == ("offline", "offline")
    assert settings.budget_lease_seconds == 60  # twice the Lambda timeout


def test_an_openai_key_switches_both_providers_to_openai():
    settings = load_settings({**MINIMAL, "OPENAI_API_KEY": "sk-x"})

    assert (settings.llm_provider, settings.embedding_provider) == ("openai", "openai")
    assert "sk-x" not in repr(settings)  # secrets never print


def test_empty_values_count_as_unset():
    settings = load_settings({**MINIMAL, "OPENAI_API_KEY": "", "TOKEN_CACHE_TTL": ""})

    assert settings.llm_provider == "offline"
    assert settings.token_cache_ttl == 300


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TOKEN_BUCKET_CAPACITY", "many"),
        ("TOKEN_BUCKET_CAPACITY", "0"),
        ("TOKEN_REFILL_RATE", "-1"),
        ("DAILY_BUDGET_USD", "lots"),
        ("CORS_ORIGINS", "https://app.example.com/"),
        ("CORS_ORIGINS", "*"),
        ("PLAN_LIMITS", "{not json"),
        ("PLAN_LIMITS", '{"pro": {"capacity": 0}}'),
        ("PLAN_LIMITS", '{"pro": {"burst": 5}}'),
        ("LLM_PROVIDER", "anthropic"),
        ("CHROMA_PORT", "99999"),
        ("MAX_QUESTION_CHARS", "0"),
        ("AUTH_API_URL", "api.example.com"),
        ("CHROMA_SSL", "maybe"),
        ("BUDGET_LEASE_SECONDS", "0"),
        ("BUDGET_LEASE_SECONDS", "soon"),
    ],
)
def test_invalid_values_fail_naming_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load_settings({**MINIMAL, variable: value})


def test_missing_required_variables_are_named():
    with pytest.raises(ConfigError) as raised:
        load_settings({})

    assert "AUTH_API_URL" in str(raised.value)
    assert "TABLE_NAME" in str(raised.value)


def test_an_unpriced_model_refuses_to_start():
    with pytest.raises(ConfigError, match="OPENAI_MODEL: no price for 'gpt-9'"):
        load_settings({**MINIMAL, "OPENAI_MODEL": "gpt-9"})


def test_openai_provider_without_a_key_refuses_to_start():
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is required"):
        load_settings({**MINIMAL, "LLM_PROVIDER": "openai"})


def test_plan_limits_and_origins_parse():
    settings = load_settings(
        {
            **MINIMAL,
            "PLAN_LIMITS": '{"pro": {"capacity": 60, "refill_rate": 0.5, "daily_limit": 500}}',
            "CORS_ORIGINS": "https://react.gravitycar.com, https://www.gravitycar.com",
        }
    )

    assert settings.plan_limits["pro"].capacity == 60
    assert settings.plan_limits["pro"].daily_limit == 500
    assert settings.cors_origins == ["https://react.gravitycar.com", "https://www.gravitycar.com"]
