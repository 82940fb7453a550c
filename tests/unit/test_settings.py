import json
from decimal import Decimal

import pytest

from dnd_rag.logic.money.budget import LEASE_SECONDS
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
    assert settings.budget_lease_seconds == LEASE_SECONDS  # the budget's own default (>= 2 x Lambda timeout)
    assert settings.controls_refresh_seconds == 4  # under SPEC §3's 5 s
    assert settings.answer_cache_ttl == 86_400  # the answer cache is on: a day


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
        ("CHROMA_COLLECTIONS", "dnd_rules,no spaces allowed"),
        ("CHROMA_COLLECTIONS", "ok_name,x"),
        ("RETRIEVAL_ENTITY_QUERIES", "sometimes"),
        ("ALERT_SNS_TOPIC_ARN", "alerts-topic"),
        ("ALERT_SNS_TOPIC_ARN", "arn:aws:sqs:us-east-1:123456789012:alerts"),
        ("ALERT_WEBHOOK_URL", "hooks.example.com/dnd"),
        ("ALERT_WEBHOOK_TIMEOUT_SECONDS", "0"),
        ("ALERT_WEBHOOK_TIMEOUT_SECONDS", "30"),
        ("ALERT_WEBHOOK_TIMEOUT_SECONDS", "2.5"),  # past the alert bound's delivery step (2 s)
        ("ALERT_CLAIM_SECONDS", "9"),  # shorter than a delivery job may take, plus a margin
        ("ALERT_CLAIM_SECONDS", "soon"),
        ("CONTROLS_REFRESH_SECONDS", "6"),  # SPEC §3: every container applies a change within 5 s
        ("CONTROLS_REFRESH_SECONDS", "-1"),
        ("CONTROLS_REFRESH_SECONDS", "often"),
        ("ANSWER_CACHE_TTL", "-1"),
        ("ANSWER_CACHE_TTL", "forever"),
        ("ANSWER_CACHE_TTL", "2592001"),
        ("REASONING_EFFORT", "extreme"),
        ("PRICES_FILE", "/nowhere/prices.json"),
        ("PRICES_PARAMETER", "{}"),  # what dal/secrets.py read from the parameter (into PRICES_JSON)
    ],
)
def test_invalid_values_fail_naming_the_variable(variable, value):
    variable_set = "PRICES_JSON" if variable == "PRICES_PARAMETER" else variable
    with pytest.raises(ConfigError, match=variable):
        load_settings({**MINIMAL, variable_set: value})


def test_missing_required_variables_are_named():
    with pytest.raises(ConfigError) as raised:
        load_settings({})

    assert "AUTH_API_URL" in str(raised.value)
    assert "TABLE_NAME" in str(raised.value)


def test_an_unpriced_model_refuses_to_start():
    with pytest.raises(ConfigError, match="OPENAI_MODEL: no price for 'gpt-9'"):
        load_settings({**MINIMAL, "OPENAI_MODEL": "gpt-9"})


def price_file(models):
    entry = {"input": 0.1, "output": 0.4, "effective": "2026-12-04", "source": "https://example.com/prices"}
    return json.dumps(
        {
            "version": "override-7",
            "chat": dict.fromkeys(models, entry),
            "embeddings": {"text-embedding-3-small": {k: v for k, v in entry.items() if k != "output"}},
        }
    )


def test_a_price_file_override_decides_which_models_may_run(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(price_file(["gpt-new"]))

    settings = load_settings({**MINIMAL, "PRICES_FILE": str(path), "OPENAI_MODEL": "gpt-new"})

    assert settings.price_book.chat.input == 100
    assert settings.price_book.version == "override-7"
    with pytest.raises(ConfigError, match="OPENAI_MODEL: no price for 'gpt-4o-mini' in price file override-7"):
        load_settings({**MINIMAL, "PRICES_FILE": str(path)})  # the shipped default model is not in it


def test_a_model_missing_from_the_ssm_price_override_refuses_to_start():
    with pytest.raises(ConfigError, match="OPENAI_MODEL: no price for 'gpt-5-mini' in price file override-7"):
        load_settings({**MINIMAL, "PRICES_JSON": price_file(["gpt-other"]), "OPENAI_MODEL": "gpt-5-mini"})


def test_a_priced_model_without_a_shipped_tokenizer_refuses_to_start():
    # holds are priced on exact prompt counts: a model added by a price override must be countable
    env = {**MINIMAL, "OPENAI_API_KEY": "sk-x", "PRICES_JSON": price_file(["o9-mini"]), "OPENAI_MODEL": "o9-mini"}

    with pytest.raises(ConfigError, match="OPENAI_MODEL: no tokenizer known for model 'o9-mini'"):
        load_settings(env)


def test_two_price_overrides_are_refused(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(price_file(["gpt-4o-mini"]))

    with pytest.raises(ConfigError, match="PRICES_FILE and PRICES_PARAMETER are both set"):
        load_settings({**MINIMAL, "PRICES_FILE": str(path), "PRICES_JSON": price_file(["gpt-4o-mini"])})


def test_reasoning_models_come_from_the_price_file_with_minimal_effort_by_default():
    assert load_settings({**MINIMAL, "OPENAI_MODEL": "gpt-5-nano"}).reasoning_model
    assert not load_settings({**MINIMAL, "OPENAI_MODEL": "gpt-4.1-mini"}).reasoning_model
    assert load_settings(MINIMAL).reasoning_effort == "minimal"
    assert load_settings({**MINIMAL, "REASONING_EFFORT": "low"}).reasoning_effort == "low"


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


@pytest.mark.parametrize("url", ["http://api.example.com", "http://127.0.0.1:8081"])
def test_in_prod_the_auth_api_must_be_https(url):
    with pytest.raises(ConfigError, match="AUTH_API_URL must be an https:// URL when STAGE is prod"):
        load_settings({**MINIMAL, "STAGE": "prod", "AUTH_API_URL": url})


def test_in_prod_the_alert_webhook_must_be_https_and_the_alert_channels_are_optional():
    prod = {**MINIMAL, "STAGE": "prod", "AUTH_API_URL": "https://api.example.com"}
    with pytest.raises(ConfigError, match="ALERT_WEBHOOK_URL must be an https:// URL when STAGE is prod"):
        load_settings({**prod, "ALERT_WEBHOOK_URL": "http://hooks.example.com/dnd"})

    settings = load_settings(
        {
            **prod,
            "ALERT_WEBHOOK_URL": "https://hooks.example.com/dnd",
            "ALERT_SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:dnd-alerts.fifo",
        }
    )
    assert settings.alert_webhook_timeout_seconds == 2.0
    assert settings.alert_claim_seconds == 60
    assert load_settings(MINIMAL).alert_webhook_url is None
    assert load_settings(MINIMAL).alert_sns_topic_arn is None


def test_in_prod_an_https_auth_api_is_accepted_and_dev_may_use_http():
    assert load_settings({**MINIMAL, "STAGE": "prod", "AUTH_API_URL": "https://api.example.com"}).stage == "prod"
    assert load_settings({**MINIMAL, "STAGE": "dev"}).auth_api_url == "http://127.0.0.1:8081"


def test_an_unknown_stage_fails_naming_the_variable():
    with pytest.raises(ConfigError, match="STAGE"):
        load_settings({**MINIMAL, "STAGE": "staging"})


def test_one_collection_by_default_and_several_when_listed():
    assert load_settings(MINIMAL).collections == ["dnd_rules"]
    assert load_settings({**MINIMAL, "CHROMA_COLLECTION": "mine"}).collections == ["mine"]

    settings = load_settings({**MINIMAL, "CHROMA_COLLECTIONS": " players_handbook, monster_manual,players_handbook "})

    assert settings.collections == ["players_handbook", "monster_manual"]


def test_metadata_keys_are_configurable_with_defaults_for_common_pipelines():
    defaults = load_settings(MINIMAL)
    assert defaults.chroma_source_keys[0] == "source"
    assert "page_number" in defaults.chroma_page_keys

    settings = load_settings({**MINIMAL, "CHROMA_SOURCE_KEYS": "doc_name", "CHROMA_PAGE_KEYS": "pg,page"})

    assert (settings.chroma_source_keys, settings.chroma_page_keys) == (["doc_name"], ["pg", "page"])


def test_log_format_is_json_or_human_and_json_in_prod():
    assert load_settings(MINIMAL).log_format == "json"
    assert load_settings({**MINIMAL, "LOG_FORMAT": "human"}).log_format == "human"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_settings({**MINIMAL, "LOG_FORMAT": "pretty"})
    prod = {**MINIMAL, "STAGE": "prod", "AUTH_API_URL": "https://api.example.com"}
    with pytest.raises(ConfigError, match="LOG_FORMAT must be json when STAGE is prod"):
        load_settings({**prod, "LOG_FORMAT": "human"})


def test_alert_timings_that_break_the_alert_bound_say_why():
    with pytest.raises(ConfigError, match=r"ALERT_WEBHOOK_TIMEOUT_SECONDS: .*must be at most 2 s: a request waits"):
        load_settings({**MINIMAL, "ALERT_WEBHOOK_TIMEOUT_SECONDS": "3"})
    with pytest.raises(ConfigError, match=r"ALERT_CLAIM_SECONDS: .*must be at least 9.25 s: a claim must outlive"):
        load_settings({**MINIMAL, "ALERT_CLAIM_SECONDS": "5"})
    assert load_settings({**MINIMAL, "ALERT_CLAIM_SECONDS": "10"}).alert_claim_seconds == 10


PROD = {**MINIMAL, "STAGE": "prod", "AUTH_API_URL": "https://api.example.com"}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CHROMA_API_KEY": "ck-secret", "CHROMA_SSL": "false"}, "CHROMA_SSL"),
        ({"CHROMA_API_KEY": "ck-secret"}, "CHROMA_SSL"),  # CHROMA_SSL defaults to false
        ({"OPENAI_BASE_URL": "http://proxy.example.com/v1", "OPENAI_API_KEY": "sk-secret"}, "OPENAI_BASE_URL"),
        ({"CORS_ORIGINS": "https://app.example.com,http://app.example.com"}, "CORS_ORIGINS"),
        ({"CORS_ORIGINS": "http://localhost:3000"}, "CORS_ORIGINS"),
    ],
)
def test_prod_refuses_at_cold_start_what_would_travel_in_clear_text_naming_the_setting(env, variable):
    with pytest.raises(ConfigError, match=variable) as refused:
        load_settings({**PROD, **env})

    assert "secret" not in str(refused.value)  # never the key itself
    assert load_settings({**MINIMAL, **env}).stage == "dev"  # a laptop may


def test_prod_accepts_tls_everywhere_and_plaintext_chroma_without_a_key():
    settings = load_settings(
        {
            **PROD,
            "CHROMA_API_KEY": "ck-secret",
            "CHROMA_SSL": "true",
            "OPENAI_API_KEY": "sk-secret",
            "OPENAI_BASE_URL": "https://proxy.example.com/v1",
            "CORS_ORIGINS": "https://app.example.com,https://www.example.com",
        }
    )

    assert settings.stage == "prod"
    assert load_settings({**PROD, "CHROMA_SSL": "false"}).chroma_ssl is False  # no key, nothing to leak
